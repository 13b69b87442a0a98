/**
 * podlab's BGP-4 speaker: `BgpSpeaker` (speaker.ts, start there), its pure
 * parts (codec, FSM, RIB) for tests and tools.
 */
export * from './codec/index.ts';
export * from './session.ts';
export * from './fsm.ts';
export * from './rib.ts';
export * from './speaker.ts';
