#!/bin/sh
# Entrypoint of the remotetune fake host: host keys, the trial user's authorized key,
# the fake GPU spec, then the command (by default `sshd -D -e` in the foreground).
set -eu

log() { echo "remotetune-host: $*" >&2; }

# Host keys: generated on first start, so every container has its own identity
# (kept across `docker restart`, new after `docker-compose down`).
if ! ls /etc/ssh/ssh_host_*_key >/dev/null 2>&1; then
    ssh-keygen -A >/dev/null
    log "generated host keys"
fi

# The client key allowed to log in as `trial`: a mounted file, else $AUTHORIZED_KEYS,
# else the key baked in with --build-arg AUTHORIZED_KEYS.
keys=/home/trial/.ssh/authorized_keys
if [ -s /run/remotetune/authorized_keys ]; then
    cat /run/remotetune/authorized_keys > "$keys"
elif [ -n "${AUTHORIZED_KEYS:-}" ]; then
    printf '%s\n' "$AUTHORIZED_KEYS" > "$keys"
elif grep -q . /etc/remotetune/authorized_keys.build; then
    cat /etc/remotetune/authorized_keys.build > "$keys"
else
    log "warning: no authorized key (mount /run/remotetune/authorized_keys or set AUTHORIZED_KEYS)"
    : > "$keys"
fi
chown trial:trial "$keys"
chmod 600 "$keys"

# The fake GPUs of this container, read by the fake nvidia-smi in every ssh session
# through FAKE_NVIDIA_SMI_FILE (see sshd_config); `[]` means no GPU.
if [ -n "${FAKE_NVIDIA_SMI_GPUS:-}" ]; then
    printf '%s\n' "$FAKE_NVIDIA_SMI_GPUS" > /etc/remotetune/gpus.json
elif [ ! -f /etc/remotetune/gpus.json ]; then
    printf '[]\n' > /etc/remotetune/gpus.json
fi
chmod 644 /etc/remotetune/gpus.json

mkdir -p /run/sshd
if [ "${1:-}" != /usr/sbin/sshd ]; then
    exec "$@"
fi

# Keep sshd alive like an init system would: when the sshd listener dies (a test's
# restart_sshd, a crash) start a new one, so the container and the trials running in it
# survive; `docker stop` (SIGTERM) stops the loop and sshd.
"$1" -t || { log "sshd configuration is invalid (see above)"; exit 1; }
stopping=0
sshd_pid=""
trap 'stopping=1; [ -n "$sshd_pid" ] && kill -TERM "$sshd_pid" 2>/dev/null' TERM INT
while [ "$stopping" = 0 ]; do
    "$@" &
    sshd_pid=$!
    status=0
    wait "$sshd_pid" || status=$?
    # `wait` returns early when a trapped signal arrives: wait for sshd itself.
    while kill -0 "$sshd_pid" 2>/dev/null; do wait "$sshd_pid" || status=$?; done
    [ "$stopping" = 0 ] || break
    log "sshd exited with status $status; restarting it"
    sleep 0.2
done
