#!/bin/sh
# uacme challenge hook for tests/test_acme_uacme.py: answers http-01 by writing
# the key authorization under $UACME_WEBROOT/.well-known/acme-challenge/TOKEN
# (served by the test's http.server on kakuin's va.http01_port), and removes
# it when uacme reports the challenge done or failed. Other types are declined.
# Arguments (man uacme, -h): METHOD TYPE IDENT TOKEN AUTH.
set -eu
[ $# -eq 5 ] || { echo "usage: $0 method type ident token auth" >&2; exit 85; }
METHOD=$1 TYPE=$2 TOKEN=$4 AUTH=$5
[ "$TYPE" = http-01 ] || exit 1
: "${UACME_WEBROOT:?UACME_WEBROOT is not set}"
DIR="$UACME_WEBROOT/.well-known/acme-challenge"
case "$METHOD" in
    begin)
        mkdir -p "$DIR"
        printf '%s' "$AUTH" > "$DIR/$TOKEN"
        echo "begin $TOKEN" >> "$UACME_WEBROOT/hook.log"
        ;;
    done|failed)
        rm -f "$DIR/$TOKEN"
        echo "$METHOD $TOKEN" >> "$UACME_WEBROOT/hook.log"
        ;;
    *)
        exit 1
        ;;
esac
