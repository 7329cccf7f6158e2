#!/usr/bin/env bash
# Makes a DEVELOPMENT certificate set for edgefl with openssl: a CA, a server certificate and N
# client certificates (ECDSA P-256, SHA-256). Not for production: use your own PKI there.
#
#   deploy/certs/make-dev-certs.sh OUT_DIR [N_CLIENTS=3]
#   deploy/certs/make-dev-certs.sh --add-client NAME OUT_DIR   # one more client, existing CA
#
# Writes into OUT_DIR (created; existing files are overwritten):
#   ca.pem, ca.key                  the development CA (give ca.pem to clients: --ca_cert, and to
#                                   the server for mutual TLS: --client_ca)
#   server.pem, server.key          the server certificate: CN=edgefl-server, SAN DNS:localhost,
#                                   IP:127.0.0.1 plus $SERVER_SANS (e.g. "DNS:fl.example.org,IP:10.0.0.5")
#                                   (fl-server --tls_cert server.pem --tls_key server.key)
#   client-<i>.pem, client-<i>.key  client i's certificate, CN and SAN client-<i>, for TLS client
#                                   authentication (fl-client --tls_cert client-0.pem --tls_key
#                                   client-0.key); the server takes the client id from it
#   <NAME>.pem, <NAME>.key          with --add-client: CN and SAN NAME, signed by OUT_DIR/ca.key
# Private keys are written with mode 0600 (fl-server / fl-client refuse group/other-readable keys).
# Validity: $DAYS days (default 365; DAYS=-1 makes an already expired certificate, for tests).
set -euo pipefail

usage() {
  echo "usage: $0 OUT_DIR [N_CLIENTS=3]  |  $0 --add-client NAME OUT_DIR" >&2
  exit 2
}
add_client=""
if [[ "${1:-}" == "--add-client" ]]; then
  [[ $# -eq 3 ]] || usage
  add_client="$2"
  out="$3"
  n=0
  if ! [[ "$add_client" =~ ^[A-Za-z0-9._-]{1,64}$ ]]; then
    echo "$0: client NAME must be 1-64 of [A-Za-z0-9._-], got '$add_client'" >&2
    exit 2
  fi
  if [[ ! -f "$out/ca.pem" || ! -f "$out/ca.key" ]]; then
    echo "$0: no CA in $out (make one first: $0 $out)" >&2
    exit 2
  fi
else
  [[ $# -ge 1 && $# -le 2 ]] || usage
  out="$1"
  n="${2:-3}"
fi
days="${DAYS:-365}"
extra_sans="${SERVER_SANS:-}"
if ! [[ "$n" =~ ^[0-9]+$ ]]; then
  echo "$0: N_CLIENTS must be a non-negative integer, got '$n'" >&2
  exit 2
fi
command -v openssl >/dev/null || { echo "$0: openssl not found (apt-get install openssl)" >&2; exit 2; }

mkdir -p "$out"
umask 077
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

newkey() {  # newkey FILE
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
  chmod 600 "$1"
}

sign() {  # sign NAME SUBJECT EXTFILE: a key and a certificate signed by the CA
  newkey "$out/$1.key"
  openssl req -new -key "$out/$1.key" -subj "$2" -out "$work/$1.csr"
  openssl x509 -req -in "$work/$1.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$days" -sha256 -extfile "$3" \
    -out "$out/$1.pem" 2>/dev/null
  chmod 644 "$out/$1.pem"
}

client_cert() {  # client_cert NAME
  printf '%s\n' "basicConstraints = critical, CA:FALSE" \
    "keyUsage = critical, digitalSignature" "extendedKeyUsage = clientAuth" \
    "subjectAltName = DNS:$1" >"$work/client.ext"
  sign "$1" "/O=edgefl dev/CN=$1" "$work/client.ext"
}

if [[ -n "$add_client" ]]; then
  client_cert "$add_client"
  echo "wrote client certificate $out/$add_client.pem (CN=$add_client, $days days)"
  exit 0
fi

# ---- CA
newkey "$out/ca.key"
printf '%s\n' "basicConstraints = critical, CA:TRUE, pathlen:0" \
  "keyUsage = critical, keyCertSign, cRLSign" "subjectKeyIdentifier = hash" >"$work/ca.ext"
openssl req -new -key "$out/ca.key" -subj "/O=edgefl dev/CN=edgefl development CA" \
  -out "$work/ca.csr"
openssl x509 -req -in "$work/ca.csr" -signkey "$out/ca.key" -days "$days" -sha256 \
  -extfile "$work/ca.ext" -out "$out/ca.pem" 2>/dev/null
chmod 644 "$out/ca.pem"

# ---- server
sans="DNS:localhost,IP:127.0.0.1"
[[ -n "$extra_sans" ]] && sans="$sans,$extra_sans"
printf '%s\n' "basicConstraints = critical, CA:FALSE" \
  "keyUsage = critical, digitalSignature, keyEncipherment" "extendedKeyUsage = serverAuth" \
  "subjectAltName = $sans" >"$work/server.ext"
sign server "/O=edgefl dev/CN=edgefl-server" "$work/server.ext"

# ---- clients
for ((i = 0; i < n; i++)); do
  client_cert "client-$i"
done
echo "wrote development CA, server certificate ($sans) and $n client certificate(s) to $out"
