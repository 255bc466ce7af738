package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/client"
	"github.com/paxosd/paxosd/paxos/clientapi"
)

func forceFlag() []cli.Flag {
	return []cli.Flag{&cli.BoolFlag{Name: "force", Usage: "make the change even if the new configuration would have no quorum of acceptors the leader reaches", EnvVars: env("FORCE")}}
}

func memberCommand() *cli.Command {
	return &cli.Command{
		Name:  "member",
		Usage: "list, add, remove or promote the cluster's members",
		Description: `Changes go through the log: the leader proposes the change, and it governs
the slots from paxosd.ConfigDelay (64) slots after the one that chose it; the
leader fills those at once. A command returns once the change governs, so a
removed member may be stopped as soon as 'member remove' returns. One change
at a time: a change while another is on its way is refused.`,
		Subcommands: []*cli.Command{
			clientCommand("list", "", "show the members as the newest configuration has them", `Asks the members for their configuration and prints the newest one any of
them knows: ID, roles, the roles a joining member gets once it caught up
(TARGET), and addresses. CONFIG is the slot whose value made it.`, 0, nil, runMemberList),
			clientCommand("add", "ID=PEERADDR[/ROLES]", "add a member, which then joins with 'paxosd serve --join'", `Adds member ID, reachable by its peers at PEERADDR and by clients at --client.
ROLES are proposer, acceptor and learner joined by '+' (default: all three);
they must include learner. The member joins as a learner only, without a vote:
start it with an empty --data-dir and --join, and once it has caught up the
leader gives it ROLES by itself. An ID that was ever removed can never be used
again.`, 1, append([]cli.Flag{&cli.StringFlag{Name: "client", Usage: "the new member's client address (required)", EnvVars: env("MEMBER_CLIENT")}}, forceFlag()...), runMemberAdd),
			clientCommand("remove", "ID", "remove a member for good", `Removes member ID; its ID can never return. The command returns once the
change governs; then stop the member. To replace a member that lost its data,
remove it and add a new one under a new ID. Removing the leader works: it
hands leadership over once the change governs.`, 1, forceFlag(), runMemberRemove),
			clientCommand("promote", "ID", "give a member roles now", `Gives member ID the roles --roles (default: all three) at once, instead of
waiting for the leader to promote a joining member by itself. A member keeps
the learner role.`, 1, append([]cli.Flag{&cli.StringFlag{Name: "roles", Value: "proposer+acceptor+learner", Usage: "the roles, joined by '+'", EnvVars: env("MEMBER_ROLES")}}, forceFlag()...), runMemberPromote),
		},
	}
}

func leaderCommand() *cli.Command {
	return &cli.Command{
		Name:  "leader",
		Usage: "operate on leadership",
		Subcommands: []*cli.Command{
			clientCommand("transfer", "ID", "hand leadership to member ID", `The leader stops taking commands and tells member ID, a proposer, to campaign
at once. If ID does not take over, a new leader is elected after an election
timeout.`, 1, nil, runLeaderTransfer),
		},
	}
}

func parseNodeID(s string) (paxos.NodeID, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, usageError{fmt.Errorf("%q is not a member ID (a positive integer)", s)}
	}
	return paxos.NodeID(id), nil
}

func runMemberAdd(c *cli.Context, cl *client.Client, o *output) error {
	spec := c.Args().Get(0)
	idStr, rest, ok := strings.Cut(spec, "=")
	if !ok || rest == "" {
		return usageError{fmt.Errorf("%q is not ID=PEERADDR[/ROLES], for example 4=10.0.0.4:7101", spec)}
	}
	id, err := parseNodeID(idStr)
	if err != nil {
		return err
	}
	addr, roleStr, hasRoles := strings.Cut(rest, "/")
	roles := paxos.RoleAll
	if hasRoles {
		if roles, err = parseRoles(strings.ReplaceAll(roleStr, "+", ",")); err != nil {
			return usageError{fmt.Errorf("%s: %w", spec, err)}
		}
	}
	if err := checkHostPort(addr); err != nil {
		return usageError{fmt.Errorf("%s: peer address: %w", spec, err)}
	}
	if c.String("client") == "" {
		return usageError{errors.New("--client is required: the new member's client address, for redirects")}
	}
	if err := checkHostPort(c.String("client")); err != nil {
		return usageError{fmt.Errorf("--client: %w", err)}
	}
	return change(c, cl, o, clientapi.Change{Op: clientapi.ChangeAdd, ID: id, Roles: roles, PeerAddr: addr, ClientAddr: c.String("client"), Force: c.Bool("force")})
}

func runMemberRemove(c *cli.Context, cl *client.Client, o *output) error {
	id, err := parseNodeID(c.Args().Get(0))
	if err != nil {
		return err
	}
	return change(c, cl, o, clientapi.Change{Op: clientapi.ChangeRemove, ID: id, Force: c.Bool("force")})
}

func runMemberPromote(c *cli.Context, cl *client.Client, o *output) error {
	id, err := parseNodeID(c.Args().Get(0))
	if err != nil {
		return err
	}
	roles, err := parseRoles(strings.ReplaceAll(c.String("roles"), "+", ","))
	if err != nil {
		return usageError{fmt.Errorf("--roles: %w", err)}
	}
	return change(c, cl, o, clientapi.Change{Op: clientapi.ChangeRoles, ID: id, Roles: roles, Force: c.Bool("force")})
}

func change(c *cli.Context, cl *client.Client, o *output, ch clientapi.Change) error {
	ctx, cancel := ctxFor(c)
	defer cancel()
	slot, err := cl.ChangeMembers(ctx, ch)
	if err != nil {
		return err
	}
	if o.json {
		o.printJSON(map[string]any{"change": ch.Op.String(), "id": ch.ID, "slot": slot, "governs_from": slot + paxos.ConfigDelay})
	} else {
		fmt.Fprintf(o.w, "member %s %d: chosen in slot %d, in effect from slot %d\n", ch.Op, ch.ID, slot, slot+paxos.ConfigDelay)
	}
	return nil
}

func runLeaderTransfer(c *cli.Context, cl *client.Client, o *output) error {
	id, err := parseNodeID(c.Args().Get(0))
	if err != nil {
		return err
	}
	ctx, cancel := ctxFor(c)
	defer cancel()
	if err := cl.TransferLeader(ctx, id); err != nil {
		return err
	}
	if o.json {
		o.printJSON(map[string]any{"transfer_to": id, "ok": true})
	} else {
		fmt.Fprintf(o.w, "leadership handed to node %d\n", id)
	}
	return nil
}

// memberRow is a member as 'member list' prints it.
type memberRow struct {
	ID         paxos.NodeID `json:"id"`
	Roles      string       `json:"roles"`
	Target     string       `json:"target,omitempty"`
	PeerAddr   string       `json:"peer_addr"`
	ClientAddr string       `json:"client_addr"`
}

func runMemberList(c *cli.Context, cl *client.Client, o *output) error {
	ctx, cancel := ctxFor(c)
	defer cancel()
	var best *clientapi.Status
	var errs []string
	for _, ep := range strings.Split(c.String("endpoints"), ",") {
		st, err := cl.Status(ctx, strings.TrimSpace(ep))
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if best == nil || st.ConfigSlot > best.ConfigSlot {
			best = &st
		}
	}
	if best == nil {
		return fmt.Errorf("no member answered: %s", strings.Join(errs, "; "))
	}
	rows := make([]memberRow, len(best.Members))
	for i, m := range best.Members {
		rows[i] = memberRow{ID: m.ID, Roles: m.Roles.String(), PeerAddr: m.PeerAddr, ClientAddr: m.ClientAddr}
		if m.Target != 0 {
			rows[i].Target = m.Target.String()
		}
	}
	if o.json {
		o.printJSON(map[string]any{"config_slot": best.ConfigSlot, "members": rows})
		return nil
	}
	printMembers(o.w, best.ConfigSlot, rows)
	return nil
}

func printMembers(w io.Writer, slot paxos.Slot, rows []memberRow) {
	fmt.Fprintf(w, "configuration of slot %d\n", slot)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLES\tTARGET\tPEER\tCLIENT")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", r.ID, r.Roles, r.Target, r.PeerAddr, r.ClientAddr)
	}
	tw.Flush()
}

// fetchJoinSnapshot fetches a fresh snapshot from the first of endpoints
// that gives one into f, for a member that joins.
func fetchJoinSnapshot(ctx context.Context, endpoints []string, t *tls.Config, f *os.File) error {
	cl, err := client.NewWithConfig(client.Config{Endpoints: endpoints, TLS: t})
	if err != nil {
		return usageError{fmt.Errorf("--join: %w", err)}
	}
	defer cl.Close()
	var errs []string
	for _, ep := range endpoints {
		if err := f.Truncate(0); err != nil {
			return err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		if _, _, err := cl.SaveSnapshot(ctx, ep, f); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		return f.Sync()
	}
	return fmt.Errorf("--join: no member gave a snapshot to start from (is the cluster running? check --join): %s", strings.Join(errs, "; "))
}

// joinCluster returns the cluster ID of the first of endpoints that
// answers a status request, 0 if none does.
func joinCluster(ctx context.Context, endpoints []string, t *tls.Config) uint64 {
	cl, err := client.NewWithConfig(client.Config{Endpoints: endpoints, Timeout: 2 * time.Second, TLS: t})
	if err != nil {
		return 0
	}
	defer cl.Close()
	for _, ep := range endpoints {
		if st, err := cl.Status(ctx, ep); err == nil {
			return st.Cluster
		}
	}
	return 0
}

// checkHostPort checks that addr is HOST:PORT.
func checkHostPort(addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%q is not HOST:PORT", addr)
	}
	return nil
}
