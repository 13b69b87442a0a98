/**
 * BGP-4 codec: one file per message part, each with `parse* → Repr | BgpError`
 * (never throws) and `serialize*` (throws RangeError on unencodable Reprs).
 */
export * from './constants.ts';
export * from './error.ts';
export * from './header.ts';
export * from './prefix.ts';
export * from './aspath.ts';
export * from './attributes.ts';
export * from './large-community.ts';
export * from './open.ts';
export * from './update.ts';
export * from './message.ts';
export * from './framer.ts';
