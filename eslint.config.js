// ESLint over the whole tree with typescript-eslint's recommended type-checked rules.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/**', '.podlab/**', 'bench/results/**', 'dist/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
  },
  {
    // The lab's processes: Date's toISOString and toUTCString load ICU's time-zone data (~1 MB of RSS in every agent).
    files: ['{packet,common,netstack,overlay,backends,bgp,service-proxy,policy,edge,apps,pod-tools,node-agent,kernel-node,router,control-plane,hostnet}/**/*.ts'],
    ignores: ['common/utc-time.ts'],
    rules: {
      'no-restricted-properties': [
        'error',
        { property: 'toISOString', message: 'common/utc-time.ts isoUtc: toISOString loads ICU time-zone data into the process.' },
        { property: 'toUTCString', message: 'common/utc-time.ts imfFixdate: toUTCString loads ICU time-zone data into the process.' },
      ],
      // A worker's isolate is made after common/heap-flags-reset.cjs reset the semi-space flag: without limits of its
      // own it gets V8's default young generation (16 MB semi-spaces), not the process's.
      'no-restricted-syntax': [
        'error',
        {
          selector: "NewExpression[callee.name='Worker']:not(:has(ObjectExpression > Property[key.name='resourceLimits']))",
          message: 'A worker thread needs resourceLimits (common/young-generation.ts workerResourceLimits, or startModuleWorker).',
        },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.cjs', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    // Preloads given to node with --require (common/heap-flags-reset.cjs) are CommonJS scripts.
    files: ['common/**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { require: 'readonly', process: 'readonly' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
