#!/usr/bin/env bash
# Makes a development PKI for a broker with mutual TLS: a CA, a server certificate for
# localhost/127.0.0.1/::1 plus the given host names, and a client certificate.
#
#   certs/make-dev-pki.sh DIR [HOST...]
#
# Then:
#   fjord serve --set tls.certificate=DIR/server.pem --set tls.key=DIR/server-key.pem \
#       --set tls.client.ca=DIR/ca.pem --set tls.client.auth=required
#   fjord topics list --ca DIR/ca.pem --cert DIR/client.pem --key DIR/client-key.pem
set -euo pipefail
dir=${1:?usage: certs/make-dev-pki.sh DIR [HOST...]}
shift
fjord=${FJORD:-$(command -v fjord || echo "$(cd "$(dirname "$0")/.." && pwd)/.build/debug/fjord")}
[[ -x "$fjord" ]] || { echo "make-dev-pki: no fjord executable (swift build, or set FJORD=path)" >&2; exit 1; }
dns=()
for host in "$@"; do dns+=(--dns "$host"); done
"$fjord" certs ca --dir "$dir"
"$fjord" certs server --dir "$dir" "${dns[@]}"
"$fjord" certs client --dir "$dir" --name client
