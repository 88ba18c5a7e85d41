#!/bin/sh
# The DaemonSet's "install" init container (slimfast.yaml): puts this image's SlimFast release on the
# node, writes the node's /etc/slimfast/config.json and finds the node's pod subnet for the broker.
# The directories are the container's mounts of the node's; the variables exist for tests.
set -eu
src=${SLIMFAST_RELEASE:-/slimfast}          # the release in the image
opt=${HOST_OPT:-/host/opt}                  # the node's /opt
etc=${SLIMFAST_ETC:-/etc/slimfast}          # the node's /etc/slimfast
config=${SLIMFAST_CONFIG_SRC:-/config/config.json}
out=${SLIMFAST_NODE_DIR:-/var/run/slimfast-node}

# 1. The release, unless the same one is there (MANIFEST lists every file's sha256). The directory is
# replaced, never its files: running containers map the old preload library, which must not change
# under them (they keep the old files until they stop).
if ! cmp -s "$src/MANIFEST" "$opt/slimfast/MANIFEST"; then
  rm -rf "$opt/slimfast.new" "$opt/slimfast.old"
  cp -a "$src" "$opt/slimfast.new"
  if [ -e "$opt/slimfast" ]; then mv "$opt/slimfast" "$opt/slimfast.old"; fi
  mv "$opt/slimfast.new" "$opt/slimfast"
  echo "slimfast-node-setup: installed the release (MANIFEST sha256 $(sha256sum < "$src/MANIFEST" | cut -c1-12)) in /opt/slimfast"
fi

# 2. The config file the node's slimfast-runc and slimfast-hook read.
mkdir -p "$etc"
cp "$config" "$etc/config.json.new"
mv "$etc/config.json.new" "$etc/config.json"

# 3. The node's pod subnet (spec.podCIDR), which the broker serves (--subnet): the CNI plugin gives
# this node's pods their addresses from it. SLIMFAST_SUBNET overrides it.
mkdir -p "$out"
if [ -n "${SLIMFAST_SUBNET:-}" ]; then
  printf '%s\n' "$SLIMFAST_SUBNET" > "$out/subnet"
else
  node /usr/local/lib/slimfast/node-pod-cidr.mjs > "$out/subnet.new"
  mv "$out/subnet.new" "$out/subnet"
fi
echo "slimfast-node-setup: pod subnet $(cat "$out/subnet")"
