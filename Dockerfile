# paxosd's image: the static binary alone, on no base image. Build it with
# 'make image', which builds bin/paxosd (CGO_ENABLED=0, version stamped)
# first; nothing is pulled from a registry.
FROM scratch
COPY bin/paxosd /paxosd
# The data directory belongs to the user the member runs as, so that a
# named volume mounted there starts out writable by it.
COPY --chown=65532:65532 packaging/image-data/ /var/lib/paxosd/
USER 65532:65532
# NB: no ENV settings: environment variables win over a --config file, so
# the image would silently override one. compose.yaml and the Kubernetes
# example give the addresses and the data directory.
VOLUME /var/lib/paxosd
EXPOSE 7001 7101 7201
ENTRYPOINT ["/paxosd"]
CMD ["serve"]
