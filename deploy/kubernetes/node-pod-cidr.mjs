// Prints this node's IPv4 pod CIDR (spec.podCIDRs of the Node object NODE_NAME), read from the API
// server with the pod's service account (slimfast.yaml grants it "get" on nodes). Used by
// node-setup.sh; Node.js only, no dependencies.
import fs from 'node:fs';
import https from 'node:https';

// The pod's service account token and the API server's CA (SLIMFAST_SA_DIR: tests only).
const sa = process.env.SLIMFAST_SA_DIR ?? '/var/run/secrets/kubernetes.io/serviceaccount';
const { KUBERNETES_SERVICE_HOST: host, KUBERNETES_SERVICE_PORT: port, NODE_NAME: node } = process.env;
const die = (msg) => {
  console.error(`node-pod-cidr: ${msg}`);
  process.exit(1);
};
if (!host || !port || !node) die("needs KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT and NODE_NAME (the downward API's spec.nodeName)");

const req = https.get(
  {
    host,
    port,
    path: `/api/v1/nodes/${encodeURIComponent(node)}`,
    ca: fs.readFileSync(`${sa}/ca.crt`),
    headers: { Authorization: `Bearer ${fs.readFileSync(`${sa}/token`, 'utf8').trim()}`, Accept: 'application/json' },
    timeout: 10_000,
  },
  (res) => {
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (d) => (body += d));
    res.on('end', () => {
      if (res.statusCode !== 200) die(`GET node ${node}: HTTP ${res.statusCode} ${body.slice(0, 300)}`);
      const spec = JSON.parse(body).spec ?? {};
      const cidrs = spec.podCIDRs ?? (spec.podCIDR ? [spec.podCIDR] : []);
      const v4 = cidrs.find((c) => !c.includes(':'));
      if (!v4) {
        die(
          `node ${node} has no IPv4 pod CIDR (spec.podCIDRs: ${JSON.stringify(cidrs)}): SlimFast needs each node's pods in one subnet ` +
            '(kube-controller-manager --allocate-node-cidrs); or set SLIMFAST_SUBNET on the install init container',
        );
      }
      console.log(v4);
    });
  },
);
req.on('timeout', () => req.destroy(new Error('no answer within 10 s')));
req.on('error', (err) => die(`GET node ${node} from https://${host}:${port}: ${err.message}`));
