# syntax=docker/dockerfile:1
# mailbot container image: a static binary on distroless, run as a non-root
# user. Build and run: see "Container" in README.md.
#
#   docker build -t mailbot .
#   docker run -d --name mailbot \
#     -v "$PWD/etc:/etc/mailbot:ro" -v mailbot-state:/var/lib/mailbot \
#     -e RELAY_PASSWORD mailbot

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# A static binary (no cgo, no libc) with no build paths in it.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/mailbot ./cmd/mailbot
# The volumes' mount points, owned by the runtime user (distroless has no
# shell to create them), and an example config to start from.
RUN mkdir -p /out/etc/mailbot/scripts /out/var/lib/mailbot \
 && cp examples/container/mailbot.yaml /out/etc/mailbot/mailbot.yaml

# distroless/static: CA certificates, time zones, /etc/passwd with the
# nonroot user (65532), and nothing else: no shell, no curl.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/mailbot /usr/local/bin/mailbot
COPY --from=build --chown=65532:65532 /out/etc/mailbot /etc/mailbot
COPY --from=build --chown=65532:65532 /out/var/lib/mailbot /var/lib/mailbot
USER 65532:65532
ENV MAILBOT_CONFIG=/etc/mailbot/mailbot.yaml
VOLUME ["/etc/mailbot", "/var/lib/mailbot"]
# The HTTP endpoint (http.listen in the config): /healthz, /readyz, /metrics.
EXPOSE 9725
# No curl in the image: mailbot asks its own /healthz (http.listen).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/mailbot", "health"]
# SIGTERM lets runs in flight finish (30s grace): give docker stop -t 45.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/mailbot"]
CMD ["run"]
