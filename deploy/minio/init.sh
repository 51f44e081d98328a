#!/bin/sh
# One-shot set-up of the MinIO store for bankpipe (the `minio-init` service of
# deploy/compose.yaml, in the minio/mc image): the bucket, and an access key for
# bankpipe that may only read and write that bucket (the root credentials stay with
# MinIO). Idempotent: run at every `docker compose up`.
#
# Objects bankpipe writes there: lake/ (raw files, encrypted client-side with
# BANKPIPE_MASTER_KEY), exports/ (the quarterly datasets), and /ready's probe objects.
set -eu

: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}"
: "${LAKE_BUCKET:?}" "${LAKE_S3_ACCESS_KEY:?}" "${LAKE_S3_SECRET_KEY:?}"

mc alias set store http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "store/$LAKE_BUCKET"

policy=/tmp/bankpipe-policy.json
cat >"$policy" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
      "Resource": ["arn:aws:s3:::$LAKE_BUCKET"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                 "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
      "Resource": ["arn:aws:s3:::$LAKE_BUCKET/*"]
    }
  ]
}
JSON
mc admin policy create store bankpipe-rw "$policy"
mc admin user add store "$LAKE_S3_ACCESS_KEY" "$LAKE_S3_SECRET_KEY" >/dev/null
# attach refuses a policy that is already attached: that is the state wanted.
if ! mc admin policy attach store bankpipe-rw --user "$LAKE_S3_ACCESS_KEY" 2>/tmp/attach.err; then
    if ! grep -qi "already" /tmp/attach.err; then
        cat /tmp/attach.err >&2
        exit 1
    fi
fi
echo "bucket $LAKE_BUCKET ready; access key $LAKE_S3_ACCESS_KEY may read and write it"
