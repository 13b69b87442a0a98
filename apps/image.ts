/** Container image references, reduced to the name podlab picks an app by. */

/**
 * The repository part of an image reference, as Docker resolves it: no
 * registry host (`docker.io/`, `ghcr.io/`, `localhost:5000/`), no implicit
 * `library/`, no tag (`:1.25`) or digest (`@sha256:...`), lower-cased.
 *   docker.io/library/nginx:1.25 -> nginx;  hashicorp/http-echo:1.0 -> hashicorp/http-echo
 */
export function normaliseImage(image: string): string {
  let s = image.trim().toLowerCase();
  const at = s.indexOf('@');
  if (at >= 0) s = s.slice(0, at);
  const parts = s.split('/');
  // A first component with a dot or a port, or "localhost", is a registry host.
  if (parts.length > 1 && (/[.:]/.test(parts[0]) || parts[0] === 'localhost')) parts.shift();
  const last = parts.length - 1;
  const colon = parts[last].indexOf(':');
  if (colon >= 0) parts[last] = parts[last].slice(0, colon);
  if (parts.length > 1 && parts[0] === 'library') parts.shift();
  return parts.join('/');
}
