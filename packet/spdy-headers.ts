/**
 * SPDY/3 header-block compression (section 2.6.10.1): each direction of a
 * connection is ONE zlib stream, primed with the spec's dictionary and
 * sync-flushed after every header block, so a block can only be
 * decompressed in order, after every block before it. The (de)compressor
 * is zlib itself, synchronously (minizlib over Node's zlib binding): Go's
 * framer (kubectl, the kubelet) does the same with compress/zlib.
 *
 * The dictionary is built as the spec lays it out: length-prefixed words,
 * then a run of status codes, dates and media types as bare text.
 */
import { constants as zlibConstants } from 'node:zlib';
import { Deflate, Inflate, type ZlibOptions } from 'minizlib';
import { WireError } from './errors.ts';
import { parseHeaderBlock, serializeHeaderBlock, type SpdyHeaders } from './spdy.ts';

const DICT_WORDS = [
  'options', 'head', 'post', 'put', 'delete', 'trace', 'accept', 'accept-charset', 'accept-encoding', 'accept-language',
  'accept-ranges', 'age', 'allow', 'authorization', 'cache-control', 'connection', 'content-base', 'content-encoding',
  'content-language', 'content-length', 'content-location', 'content-md5', 'content-range', 'content-type', 'date', 'etag',
  'expect', 'expires', 'from', 'host', 'if-match', 'if-modified-since', 'if-none-match', 'if-range', 'if-unmodified-since',
  'last-modified', 'location', 'max-forwards', 'pragma', 'proxy-authenticate', 'proxy-authorization', 'range', 'referer',
  'retry-after', 'server', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'user-agent', 'vary', 'via', 'warning',
  'www-authenticate', 'method', 'get', 'status', '200 OK', 'version', 'HTTP/1.1', 'url', 'public', 'set-cookie', 'keep-alive', 'origin',
];
const DICT_TAIL = [
  '100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505',
  '203 Non-Authoritative Information', '204 No Content', '301 Moved Permanently', '400 Bad Request', '401 Unauthorized',
  '403 Forbidden', '404 Not Found', '500 Internal Server Error', '501 Not Implemented', '503 Service Unavailable',
  'Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT',
  'chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,',
  'publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.',
].join('');

/** The SPDY/3 header compression dictionary (1423 bytes). */
export const SPDY_DICTIONARY: Buffer = Buffer.concat([
  ...DICT_WORDS.map((w) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(w.length);
    return Buffer.concat([len, Buffer.from(w, 'latin1')]);
  }),
  Buffer.from(DICT_TAIL, 'latin1'),
]);

/** zlib's DICTID: the Adler-32 of the dictionary, which the stream's header names (RFC 1950). */
export function adler32(b: Buffer): number {
  let a = 1;
  let s = 0;
  for (const x of b) {
    a = (a + x) % 65521;
    s = (s + a) % 65521;
  }
  return ((s << 16) | a) >>> 0;
}

/** A decompressed header block must fit this (a compressed one is bounded by the frame limit). */
export const MAX_HEADER_BLOCK = 64 * 1024;

/** Compresses this side's header blocks: one zlib stream for the connection. */
export class SpdyHeaderCompressor {
  private readonly z = new Deflate({ level: 9, dictionary: SPDY_DICTIONARY } as ZlibOptions);
  private readonly out: Buffer[] = [];

  constructor() {
    this.z.on('data', (c: Buffer) => this.out.push(c));
  }

  /** The compressed block to put in a SYN_STREAM, SYN_REPLY or HEADERS frame. */
  compress(headers: SpdyHeaders): Buffer {
    this.z.write(serializeHeaderBlock(headers));
    this.z.flush(zlibConstants.Z_SYNC_FLUSH);
    return Buffer.concat(this.out.splice(0));
  }

  close(): void {
    this.z.close();
  }
}

/**
 * Decompresses the peer's header blocks, in the order they arrived. After
 * the first failure the stream is unusable (the zlib state is lost), as for
 * any SPDY endpoint: the caller ends the connection.
 */
export class SpdyHeaderDecompressor {
  private readonly z = new Inflate({ dictionary: SPDY_DICTIONARY } as ZlibOptions);
  private readonly out: Buffer[] = [];
  private size = 0;
  private failed: WireError | undefined;

  constructor() {
    this.z.on('data', (c: Buffer) => {
      this.out.push(c);
      this.size += c.length;
    });
    // minizlib both throws and emits; the throw is what decompress() sees.
    this.z.on('error', () => {});
  }

  decompress(block: Buffer): SpdyHeaders | WireError {
    if (this.failed) return this.failed;
    try {
      this.z.write(block);
      this.z.flush(zlibConstants.Z_SYNC_FLUSH);
    } catch (e) {
      this.failed = new WireError('spdy', 'bad-value', `header block does not decompress: ${(e as Error).message}`);
      return this.failed;
    }
    const raw = Buffer.concat(this.out.splice(0));
    const size = this.size;
    this.size = 0;
    if (size > MAX_HEADER_BLOCK) {
      this.failed = new WireError('spdy', 'bad-length', `header block of ${size} bytes decompressed exceeds ${MAX_HEADER_BLOCK}`);
      return this.failed;
    }
    return parseHeaderBlock(raw);
  }

  close(): void {
    this.z.close();
  }
}
