// Binary traits in the browser. ipywidgets hands a kernel's bytes over as DataViews (the static HTML page too);
// node tests pass typed arrays or ArrayBuffers. Every function here takes any of the three.

/** The bytes of `data` (DataView, typed array or ArrayBuffer) as a Uint8Array over the same memory (no copy). */
export function asBytes(data) {
  return ArrayBuffer.isView(data)
    ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
    : new Uint8Array(data);
}

let halfTable = null;

/** float32 value of each of the 65536 float16 bit patterns (built on the first float16 decode). */
function halfToFloat() {
  if (halfTable) return halfTable;
  halfTable = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    let v;
    if (exp === 0) v = frac * 2 ** -24;
    else if (exp === 31) v = frac ? NaN : Infinity;
    else v = (1 + frac / 1024) * 2 ** (exp - 15);
    halfTable[h] = sign * v;
  }
  return halfTable;
}

/** Little-endian float32 or float16 bytes as a new Float32Array (bit-exact: signed zeros, subnormals, infinities,
 * NaNs); any byte offset. Any other `dtype` throws "unsupported dtype ...". */
export function decodeFloats(data, dtype) {
  const bytes = asBytes(data);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dtype === "float16") {
    const table = halfToFloat();
    const out = new Float32Array(view.byteLength >> 1);
    for (let k = 0; k < out.length; k++) out[k] = table[view.getUint16(2 * k, true)];
    return out;
  }
  if (dtype !== "float32") throw new Error(`unsupported dtype ${dtype}`);
  const n = view.byteLength >> 2;
  if (view.byteOffset % 4 === 0) return new Float32Array(view.buffer.slice(view.byteOffset, view.byteOffset + 4 * n));
  const out = new Float32Array(n);
  for (let k = 0; k < n; k++) out[k] = view.getFloat32(4 * k, true);
  return out;
}

/** Decode image bytes (PNG by default) to an ImageBitmap. */
export function decodeImage(data, type = "image/png") {
  return createImageBitmap(new Blob([asBytes(data)], { type }));
}
