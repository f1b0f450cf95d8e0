#!/bin/sh
# Entrypoint of remotetune's Slurm test cluster: the fake GPU device files, munge,
# slurmctld and slurmd (all as root, in the background), then docker/host's entrypoint,
# which installs the login user's key and keeps sshd running in the foreground.
set -eu

log() { echo "remotetune-slurm: $*" >&2; }

node="$(hostname -s)"
for f in slurm.conf gres.conf; do
    sed "s/@NODE@/$node/g" "/etc/slurm/$f.in" > "/etc/slurm/$f"
done

# Stand-ins for /dev/nvidia0..3: character devices (major 195, as NVIDIA's) where the
# container may create them, else plain files; slurmd only checks that they exist.
i=0
while [ "$i" -lt 4 ]; do
    dev="/dev/nvidia$i"
    [ -e "$dev" ] || mknod -m 666 "$dev" c 195 "$i" 2>/dev/null || : > "$dev"
    i=$((i + 1))
done

install -d -o munge -g munge -m 700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
fi
runuser -u munge -- /usr/sbin/munged
install -d -m 755 /var/spool/slurmctld /var/spool/slurmd /var/log/slurm

/usr/sbin/slurmctld
/usr/sbin/slurmd
log "munge, slurmctld and slurmd started on node $node"

exec /usr/local/sbin/remotetune-host-entrypoint "$@"
