// Decodes bytes with the decodeFloats of a built widget bundle in node and writes the float32 results back as bytes.
// usage: node half.mjs BUNDLE DTYPE OFFSET < input bytes  -> float32 little-endian bytes on stdout.
// OFFSET > 0 places the input at that byte offset inside a larger buffer (an unaligned typed-array view).
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [modulePath, dtype, offsetArg] = process.argv.slice(2);
const m = await import(pathToFileURL(modulePath).href);
const input = readFileSync(0);
const offset = Number(offsetArg || 0);
const backing = new Uint8Array(input.length + offset + 3);
backing.set(input, offset);
const view = new Uint8Array(backing.buffer, offset, input.length);
const out = m.decodeFloats(view, dtype);
process.stdout.write(Buffer.from(out.buffer, out.byteOffset, out.byteLength));
