# meshtrace-proxy: the sidecar (`run`) and its pod's init step (`init`).
#
# No base image: scripts/images.sh builds this without a daemon (buildah) from a
# context it prepares under target/images/context/proxy:
#   meshtrace-proxy     the sidecar, statically linked (glibc, crt-static)
#   etc/                passwd/group for uid 1337, hosts, nsswitch.conf (images/proxy/etc)
#   ca-certificates.crt Debian's CA bundle, for OTLP/HTTPS and the control plane
#   iptables/           iptables-restore and ip6tables-restore (nft and legacy) with
#                       the shared libraries and extensions they load: the init
#                       container (`meshtrace-proxy init`, root, NET_ADMIN) runs them
FROM scratch

ARG VERSION=0.1.0
ARG REVISION=unknown

LABEL org.opencontainers.image.title="meshtrace-proxy" \
      org.opencontainers.image.description="meshtrace sidecar proxy (L7 tracing) and its iptables init step" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="meshtrace"

ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin

COPY etc/ /etc/
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY iptables/ /
COPY meshtrace-proxy /usr/local/bin/meshtrace-proxy

USER 1337:1337
# 15001 outbound capture (loopback), 15006 inbound capture, 15021 health,
# 15020 metrics (GET /metrics, for Prometheus).
EXPOSE 15006 15020 15021
ENTRYPOINT ["/usr/local/bin/meshtrace-proxy"]
CMD ["run"]
