/** The repository root (the folder of podlab's package.json), from the sources or from dist/. */
export const ROOT: string;
/** Where `npm run build` puts the compiled JavaScript. */
export const DIST: string;
/** Where `npm run build` puts the bundled entry files. */
export const BUNDLE: string;
/** The entry files (`node-agent/main.ts`) built as bundles into BUNDLE. */
export const BUNDLED: readonly string[];
/** Bundled entries built as CommonJS and started through CODE_CACHE_LOADER, with V8's code cache. */
export const CODE_CACHED: readonly string[];
/** The loader that runs a CODE_CACHED bundle with its code cache (common/code-cache.cjs). */
export const CODE_CACHE_LOADER: string;
/** The folders compiled into dist/. */
export const RUNTIME_DIRS: readonly string[];
/** Every runtime source file (relative path) with its size and mtime. */
export function sourceFingerprint(): Record<string, { size: number; mtimeMs: number }>;
/** Records the sources dist/ was built from. */
export function writeManifest(): void;
/** True when dist/ was built from exactly the sources on disk. */
export function compiledFresh(): boolean;
/** The compiled file of an entry file (`node-agent/main.ts`): its bundle if it has one (`.cjs` if CODE_CACHED), else tsc's module. */
export function compiledFile(rel: string): string;
/** Node arguments that run an entry file (`node-agent/main.ts`): compiled when fresh (through the code-cache loader if CODE_CACHED), else through tsx. */
export function nodeArgsFor(rel: string): string[];
