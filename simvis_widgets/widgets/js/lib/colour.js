// Colour mapping of cell values: a symmetric scale [-vmax, vmax] onto a 256-entry RGB table (the kernel's
// matplotlib colormap, `lut`: 768 bytes), 0 on the middle entry.

/** The table entry of `value` on the scale [-vmax, vmax]; values beyond it take the end entries. */
export function lutIndex(value, vmax) {
  return Math.max(0, Math.min(255, Math.round(((value / vmax + 1) / 2) * 255)));
}

/** Write the opaque RGBA colour of each value into `rgba` (4 bytes per value, e.g. an ImageData's data). */
export function colourCells(values, vmax, lut, rgba) {
  for (let k = 0; k < values.length; k++) {
    const t = 3 * lutIndex(values[k], vmax);
    rgba[4 * k] = lut[t];
    rgba[4 * k + 1] = lut[t + 1];
    rgba[4 * k + 2] = lut[t + 2];
    rgba[4 * k + 3] = 255;
  }
  return rgba;
}

/** Draw a map of cell values over the whole of `ctx`'s canvas: each cell coloured on `small` (a canvas of the
 * grid's size, one pixel per cell), then stretched bilinearly, so cell centres keep their exact colour. */
export function drawCellMap(ctx, small, values, vmax, lut) {
  const img = new ImageData(small.width, small.height);
  colourCells(values, vmax, lut, img.data);
  small.getContext("2d").putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "low";
  ctx.drawImage(small, 0, 0, ctx.canvas.width, ctx.canvas.height);
}

/** The table colour of `value` on the scale [-vmax, vmax] as [r, g, b] (the same entry colourCells writes). */
export function lutColour(value, vmax, lut) {
  const t = 3 * lutIndex(value, vmax);
  return [lut[t], lut[t + 1], lut[t + 2]];
}
