// `node --import tsx --import ./bench/compiled.mjs`: see compiled-hooks.mjs.
import { register } from 'node:module';

register('./compiled-hooks.mjs', import.meta.url);
