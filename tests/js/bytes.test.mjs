// Unit tests of js/lib/bytes.js (node --test): the byte views and the float decoder on known values.
import assert from "node:assert/strict";
import { test } from "node:test";
import { asBytes, decodeFloats } from "../../simvis_widgets/widgets/js/lib/bytes.js";

const halves = (...bits) => new Uint8Array(new Uint16Array(bits).buffer); // little-endian hosts (x86, arm)

test("asBytes views the same memory, whatever holds it", () => {
  const backing = new Uint8Array([9, 1, 2, 3, 9]);
  for (const data of [new DataView(backing.buffer, 1, 3), backing.subarray(1, 4)]) {
    const bytes = asBytes(data);
    assert.deepEqual([...bytes], [1, 2, 3]);
    bytes[0] = 7;
    assert.equal(backing[1], 7, "a view, not a copy");
    backing[1] = 1;
  }
  assert.deepEqual([...asBytes(backing.buffer)], [9, 1, 2, 3, 9]);
});

test("float16: normals, subnormals, signed zeros, infinities and NaN", () => {
  const got = decodeFloats(
    halves(0x3c00, 0xc000, 0x7bff, 0x0400, 0x0001, 0x03ff, 0x0000, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0x3555),
    "float16",
  );
  const expected = [1, -2, 65504, 2 ** -14, 2 ** -24, 1023 * 2 ** -24, 0, -0, Infinity, -Infinity, NaN, 0.333251953125];
  assert.equal(got.length, expected.length);
  expected.forEach((v, k) => assert.ok(Object.is(got[k], v), `entry ${k}: ${got[k]} is not ${v}`));
});

test("float32 at any byte offset, and the result is a copy", () => {
  const values = [1.5, -0, 3.4028234663852886e38, 1.401298464324817e-45, -Infinity];
  const bytes = new Uint8Array(new Float32Array(values).buffer);
  for (const offset of [0, 1, 2, 4]) {
    const backing = new Uint8Array(bytes.length + offset);
    backing.set(bytes, offset);
    const got = decodeFloats(new DataView(backing.buffer, offset, bytes.length), "float32");
    values.forEach((v, k) => assert.ok(Object.is(got[k], v), `offset ${offset}, entry ${k}: ${got[k]} is not ${v}`));
    got[0] = 99;
    assert.equal(decodeFloats(backing.subarray(offset), "float32")[0], 1.5);
  }
});

test("a trailing partial value is ignored; other dtypes are refused", () => {
  assert.equal(decodeFloats(new Uint8Array(7), "float32").length, 1);
  assert.equal(decodeFloats(new Uint8Array(5), "float16").length, 2);
  assert.throws(() => decodeFloats(new Uint8Array(8), "float64"), /unsupported dtype float64/);
});
