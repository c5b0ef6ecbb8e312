# Multi-stage build of the three commands as static binaries, run as non-root.
#   docker build -t ottu-recon .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/ingest ./cmd/reconcile ./cmd/ottusim

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER nonroot:nonroot
# ingest: 8080; reconcile: 8081 (health and metrics)
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/ingest"]
