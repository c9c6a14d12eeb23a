# swarmnode from scratch: one static binary, nothing else. Built by scripts/docker-image.sh, which prepares the
# context (the binary and an empty data directory owned by the node's user).
FROM scratch
# On the default PATH, so `docker compose exec node-a1 swarmnode peers` works.
COPY swarmnode /usr/local/bin/swarmnode
# The identity key and lock live in /data; a volume there keeps the peer id across restarts. The key is created on
# first start, never baked into the image.
COPY --chown=10001:10001 data /data
USER 10001:10001
ENV SWARMNODE_DATA_DIR=/data \
    HOME=/data
VOLUME /data
# Swarm (TCP and QUIC) and the control API (loopback inside the container; `docker exec ... swarmnode peers`).
EXPOSE 4100/tcp 4100/udp 5100/tcp
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["swarmnode", "status"]
ENTRYPOINT ["/usr/local/bin/swarmnode"]
CMD ["run"]
