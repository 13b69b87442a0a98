# podlab in a container: one image for every process of a lab, entered through the very same
# `podlab` command as netns labs use (bin/podlab.js -> lab/daemons.ts):
#   podlab apiserver --host 0.0.0.0 ...     the Kubernetes-shaped apiserver
#   podlab agent ...                        one node (kubelet + CNI + flanneld roles); name = hostname, IP = eth0's
#   podlab get|apply|exec|node|capture ...  the CLI, inside a node container (the agent writes lab.json with --lab-json)
# Build:  docker build -t podlab:latest .
#         docker build -t podlab:tshark --build-arg WITH_TSHARK=1 .   (for the capture side-car)
# See docker-compose.yml (Compose and Swarm) and the README section "Network namespaces, kernel nodes and Docker".
FROM node:20-bookworm-slim

ARG WITH_TSHARK=0
ENV DEBIAN_FRONTEND=noninteractive
# iproute2 and ping: to look around inside a node container; libpcap, nftables and ethtool: the raw-frame
# wire of host-gw/bgp (docker-compose.raw.yml); tshark only in the capture image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 iputils-ping ca-certificates libpcap0.8 nftables ethtool \
 && if [ "$WITH_TSHARK" = "1" ]; then \
      echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections \
      && apt-get install -y --no-install-recommends tshark; \
    fi \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/podlab
COPY package.json package-lock.json ./
# npm ci runs the prepare step (scripts/build.mjs): without TypeScript (--omit=dev) it builds nothing and
# the image runs the sources through tsx. The optional `cap` addon (raw frames) is built
# against the image's own Node headers, then the compilers go again.
COPY scripts/build.mjs scripts/
COPY common/compiled.js common/
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpcap-dev g++ make python3 \
 && npm_config_nodedir=/usr/local npm ci --omit=dev --no-audit --no-fund \
 && apt-get purge -y --auto-remove libpcap-dev g++ make python3 \
 && so="$(ls /usr/lib/*/libpcap.so.0.8)" && ln -s "$so" "${so%.0.8}" \
 && rm -rf /var/lib/apt/lists/*
# (That link is what libpcap-dev leaves: cap dlopens "libpcap.so" to turn on immediate mode, without
#  which libpcap hands frames over in blocks, up to a second late.)
COPY . .
RUN ln -s /opt/podlab/bin/podlab.js /usr/local/bin/podlab && mkdir -p /var/lib/podlab

ENV PODLAB_HOME=/var/lib/podlab
# No ports to publish: the apiserver (6443/tcp), VXLAN (8472/udp) and the host-gw wire (8473/udp)
# are only used on the lab's own Docker network.
ENTRYPOINT ["node", "/opt/podlab/bin/podlab.js"]
CMD ["--help"]
