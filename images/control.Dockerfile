# meshtrace-control: the control plane (`serve`) and the injector webhook
# (`injector`), one statically linked binary.
#
# No base image: scripts/images.sh builds this without a daemon (buildah) from a
# context it prepares under target/images/context/control:
#   meshtrace-control   statically linked (glibc, crt-static)
#   etc/                passwd/group for uid 65532, hosts, nsswitch.conf (images/control/etc)
#   ca-certificates.crt Debian's CA bundle, for the Kubernetes API and HTTPS peers
FROM scratch

ARG VERSION=0.1.0
ARG REVISION=unknown

LABEL org.opencontainers.image.title="meshtrace-control" \
      org.opencontainers.image.description="meshtrace control plane and sidecar injector webhook" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="meshtrace"

COPY etc/ /etc/
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY meshtrace-control /usr/local/bin/meshtrace-control

USER 65532:65532
# 15010 control plane API, 15017 injector webhook (HTTPS).
EXPOSE 15010 15017
ENTRYPOINT ["/usr/local/bin/meshtrace-control"]
