#!/bin/sh
# Regenerates the TLS test fixtures (run once; the PEM files are committed): a private CA,
# certificates it signed for 127.0.0.1/localhost (valid for 100 years), for another name, one
# that expired in 2001, and a client certificate for mutual TLS. Needs OpenSSL 3.
set -eu
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key ca.key
openssl req -x509 -new -key ca.key -sha256 -days 36500 -subj "/CN=llmproxy test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.pem

mkdir -p "$work/newcerts" && : > "$work/index.txt" && echo 1000 > "$work/serial"
cat > "$work/ca.cnf" <<CNF
[ca]
default_ca = test
[test]
dir = $work
database = $work/index.txt
new_certs_dir = $work/newcerts
serial = $work/serial
certificate = $PWD/ca.pem
private_key = $PWD/ca.key
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
[anything]
commonName = supplied
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = \$ENV::SAN
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
CNF

# sign NAME CN EXTENSIONS SAN STARTDATE ENDDATE
sign() {
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$work/$1.csr"
  SAN="$4" openssl ca -batch -notext -config "$work/ca.cnf" -extensions "$3" \
    -startdate "$5" -enddate "$6" -in "$work/$1.csr" -out "$1.pem" 2>/dev/null
}
sign server localhost server "DNS:localhost,IP:127.0.0.1" 20250101000000Z 21250101000000Z
sign wrong_name wrong.example server "DNS:wrong.example" 20250101000000Z 21250101000000Z
sign expired localhost server "DNS:localhost,IP:127.0.0.1" 20000101000000Z 20010101000000Z
sign client llmproxy-client client "DNS:client" 20250101000000Z 21250101000000Z
rm -f ca.key
