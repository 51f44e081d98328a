#!/bin/sh
# Refuses to start the stack on secrets that are placeholders or malformed (the
# `preflight` service of deploy/compose.yaml; every other service waits for it).
#
# Compose itself already refuses a secret that is unset or empty (`${VAR:?...}`); this
# catches the values copied from .env.example unchanged (they start with `change-me`)
# and values bankpipe or a server would only refuse later, one at a time: keys that are
# not base64 of 32 bytes, a token shorter than 16 characters, passwords that would break
# the connection URLs they go into. Prints one line per problem, naming the variable
# and never its value; exit 1 when there is any.
#
# Run it by hand with the same variables: `set -a; . ./.env; set +a; sh preflight.sh`.
set -u

problems=0
problem() {
    echo "preflight: $1: $2" >&2
    problems=$((problems + 1))
}

value() { eval "printf '%s' \"\${$1-}\""; }

# Every secret: set, and not the example's placeholder.
for name in POSTGRES_PASSWORD PG_OWNER_PASSWORD PG_LOADER_PASSWORD MINIO_ROOT_PASSWORD \
    LAKE_S3_SECRET_KEY GRAFANA_ADMIN_PASSWORD BANKPIPE_MASTER_KEY BANKPIPE_PSEUDONYM_KEY \
    BANKPIPE_API_TOKEN; do
    v=$(value "$name")
    case "$v" in
        "") problem "$name" "not set (see .env.example)" ;;
        change-me*) problem "$name" "still the placeholder of .env.example: generate a value (the comment above it says how)" ;;
    esac
done

# Passwords that go into postgres:// URLs: no character that a URL would need escaped.
for name in PG_OWNER_PASSWORD PG_LOADER_PASSWORD; do
    v=$(value "$name")
    case "$v" in
        "" | change-me*) ;;
        *[!A-Za-z0-9._~-]*) problem "$name" "use only letters, digits and . _ ~ - (it goes into a URL): openssl rand -hex 24" ;;
        *) [ ${#v} -ge 16 ] || problem "$name" "at least 16 characters: openssl rand -hex 24" ;;
    esac
done

# Other passwords: length (MinIO refuses fewer than 8 characters).
for name in POSTGRES_PASSWORD MINIO_ROOT_PASSWORD LAKE_S3_SECRET_KEY GRAFANA_ADMIN_PASSWORD; do
    v=$(value "$name")
    case "$v" in
        "" | change-me*) ;;
        *) [ ${#v} -ge 16 ] || problem "$name" "at least 16 characters: openssl rand -hex 24" ;;
    esac
done

# bankpipe's keys: base64 of exactly 32 bytes (README, "Encryption at rest" and
# "Pseudonymised identifiers").
for name in BANKPIPE_MASTER_KEY BANKPIPE_PSEUDONYM_KEY; do
    v=$(value "$name")
    case "$v" in
        "" | change-me*) ;;
        *)
            n=$(printf '%s' "$v" | base64 -d 2>/dev/null | wc -c)
            if ! printf '%s' "$v" | base64 -d >/dev/null 2>&1 || [ "$n" -ne 32 ]; then
                problem "$name" "not the base64 of 32 bytes: head -c 32 /dev/urandom | base64"
            fi
            ;;
    esac
done

# The API token (README, "API token"): at least 16 characters.
v=$(value BANKPIPE_API_TOKEN)
case "$v" in
    "" | change-me*) ;;
    *) [ ${#v} -ge 16 ] || problem BANKPIPE_API_TOKEN "at least 16 characters: openssl rand -hex 32" ;;
esac

if [ "$problems" -gt 0 ]; then
    echo "preflight: $problems problem(s) in deploy/.env; nothing was started" >&2
    exit 1
fi
echo "preflight: every secret is set"
