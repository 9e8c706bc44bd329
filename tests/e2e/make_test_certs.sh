#!/bin/sh
# Makes the certificates of the TLS tests in directory $1 (openssl): a CA and a second, unrelated
# CA; a server certificate for localhost/127.0.0.1 signed by the CA, and one that expired in 2020;
# a client certificate signed by the CA and one signed by the other CA.
set -eu
d=$1
mkdir -p "$d"
cd "$d"
ossl() { openssl "$@" 2>/dev/null; }
for ca in ca other_ca; do
  ossl req -x509 -newkey rsa:2048 -nodes -keyout $ca.key -out $ca.pem -days 2 -subj "/CN=eagle test $ca"
done
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
printf 'extendedKeyUsage=clientAuth\n' >client.ext
ossl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost
ossl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial 2 -days 2 -extfile server.ext \
  -out server.pem
for who in client other_client; do
  ossl req -newkey rsa:2048 -nodes -keyout $who.key -out $who.csr -subj "/CN=eagle $who"
done
ossl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -set_serial 3 -days 2 -extfile client.ext \
  -out client.pem
ossl x509 -req -in other_client.csr -CA other_ca.pem -CAkey other_ca.key -set_serial 4 -days 2 \
  -extfile client.ext -out other_client.pem
# The expired server certificate: `openssl ca` is the tool that sets explicit validity dates.
mkdir -p ca_db
: >ca_db/index.txt
echo 05 >ca_db/serial
cat >ca.cnf <<CNF
[ca]
default_ca = test
[test]
dir = ca_db
database = ca_db/index.txt
serial = ca_db/serial
new_certs_dir = ca_db
certificate = ca.pem
private_key = ca.key
default_md = sha256
policy = any
copy_extensions = none
[any]
commonName = supplied
[ext]
subjectAltName = DNS:localhost,IP:127.0.0.1
extendedKeyUsage = serverAuth
CNF
ossl ca -batch -config ca.cnf -extensions ext -startdate 20200101000000Z -enddate 20200102000000Z \
  -in server.csr -out expired.pem
test -s expired.pem
