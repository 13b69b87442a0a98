/**
 * The layering, checked by `npm test` (npm run lint:layers). Folders are listed
 * bottom to top; a folder may import its own layer's folders and the ones
 * below, never one above, and no module may take part in an import cycle.
 * ARCHITECTURE.md draws the same picture.
 */
/* global module -- CommonJS: dependency-cruiser require()s this file, so `module` is its own. */
const LAYERS = [
  ['packet', 'common'],
  ['bgp', 'control-plane', 'hostnet'],
  ['netstack', 'overlay'],
  ['service-proxy', 'policy', 'edge'],
  ['backends'],
  ['apps'],
  ['pod-tools'],
  ['node-agent', 'kernel-node', 'router'],
  ['lab'],
  ['scenarios'],
  ['cli', 'bench'],
  ['bin'],
];

const folder = (names) => `^(${names.join('|')})/`;

const upward = LAYERS.slice(0, -1).map((layer, i) => ({
  name: `no-upward-from-${layer.join('-')}`,
  comment: `${layer.join(', ')} may not import a layer above it (${LAYERS.slice(i + 1).flat().join(', ')})`,
  severity: 'error',
  from: { path: folder(layer) },
  to: { path: folder(LAYERS.slice(i + 1).flat()) },
}));

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'no module may take part in a runtime import cycle (a cycle closed only by `import type` loads nothing twice)',
      severity: 'error',
      from: {},
      to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } },
    },
    {
      name: 'packet-is-self-contained',
      comment: 'packet/ (wire codecs) imports nothing of podlab outside itself',
      severity: 'error',
      from: { path: '^packet/' },
      to: { dependencyTypes: ['local'], pathNot: '^packet/' },
    },
    {
      name: 'common-is-self-contained',
      comment: 'common/ (clock, rng, logging) imports nothing of podlab outside itself',
      severity: 'error',
      from: { path: '^common/' },
      to: { dependencyTypes: ['local'], pathNot: '^common/' },
    },
    {
      name: 'netstack-only-packet-common',
      comment: 'netstack/ (the emulated kernel) imports only packet/ and common/',
      severity: 'error',
      from: { path: '^netstack/' },
      to: { dependencyTypes: ['local'], pathNot: '^(netstack|packet|common)/' },
    },
    {
      name: 'production-never-imports-tests',
      severity: 'error',
      from: { pathNot: '^test/' },
      to: { path: '^test/' },
    },
    ...upward,
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|\\.podlab)/' },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
