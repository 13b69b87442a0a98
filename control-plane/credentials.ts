/**
 * Where clients find the credentials of a lab: the CA to trust and the
 * bearer token to send. Used by the CLI (the admin identity) and by node
 * agents (their own node identity); see pki.ts for the files.
 *
 * Environment, for containers and scripts (first match wins):
 *   PODLAB_TOKEN        the token itself
 *   PODLAB_TOKEN_FILE   a file holding it
 *   PODLAB_CA_FILE      the CA certificate (PEM)
 *   PODLAB_PKI_DIR      the PKI directory (default `<stateDir>/pki`)
 */
import fs from 'node:fs';
import { defaultPkiDir, nodeToken, pkiFiles, readNodeTokenKey } from './pki.ts';

/** What an ApiClient needs to reach an apiserver. */
export interface ClientCredentials {
  /** Bearer token. */
  token: string;
  /** PEM of the CA that signed the apiserver's certificate. */
  ca: string;
}

/** A missing or unreadable credential file, named in the message. */
export class CredentialsError extends Error {
  override readonly name = 'CredentialsError';
}

type Env = Record<string, string | undefined>;

function read(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new CredentialsError(`cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message} (is the lab up, and is this its state directory?)`);
  }
}

function pkiDirOf(stateDir: string, env: Env): string {
  return env.PODLAB_PKI_DIR || defaultPkiDir(stateDir);
}

function caOf(stateDir: string, env: Env, caFile?: string): string {
  const file = caFile || env.PODLAB_CA_FILE || pkiFiles(pkiDirOf(stateDir, env)).caCert;
  return read(file, 'the CA certificate');
}

/** The admin identity's credentials of the lab in `stateDir`. */
export function adminCredentials(stateDir: string, env: Env = process.env): ClientCredentials {
  const token = env.PODLAB_TOKEN || (env.PODLAB_TOKEN_FILE ? read(env.PODLAB_TOKEN_FILE, 'the token file') : read(pkiFiles(pkiDirOf(stateDir, env)).adminToken, 'the admin token'));
  return { token, ca: caOf(stateDir, env) };
}

/**
 * A node agent's credentials: `--token-file`, else $PODLAB_TOKEN_FILE or
 * $PODLAB_TOKEN, else `<pki>/nodes/<name>.token` (written by the launcher),
 * else a token issued from `<pki>/node-token.key` where the agent can read
 * it (the compose lab shares the PKI directory with its nodes).
 */
export function agentCredentials(opts: { stateDir: string; name: string; tokenFile?: string; caFile?: string; env?: Env }): ClientCredentials {
  const env = opts.env ?? process.env;
  const pki = pkiDirOf(opts.stateDir, env);
  let token: string;
  if (opts.tokenFile || env.PODLAB_TOKEN_FILE) token = read((opts.tokenFile || env.PODLAB_TOKEN_FILE)!, 'the token file');
  else if (env.PODLAB_TOKEN) token = env.PODLAB_TOKEN;
  else if (fs.existsSync(`${pki}/nodes/${opts.name}.token`)) token = read(`${pki}/nodes/${opts.name}.token`, 'the node token');
  else if (fs.existsSync(pkiFiles(pki).nodeTokenKey)) token = nodeToken(readNodeTokenKey(pki), opts.name);
  else throw new CredentialsError(`no token for node ${opts.name}: give --token-file, set PODLAB_TOKEN(_FILE), or share ${pki} with the apiserver`);
  return { token, ca: caOf(opts.stateDir, env, opts.caFile) };
}
