// COCO RLE (compressed string counts, column-major) and the DAVIS palette, for the threeam web app.

/** Run lengths from a COCO compressed counts string. */
export function rleCounts(s) {
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = 1;
    while (more) {
      const c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p += 1;
      k += 1;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

/** Paint object `id` into the row-major id map `ids` (Uint8Array of H*W) where the RLE is set. */
export function paintRle(ids, rle, id) {
  const [h, w] = rle.size;
  const counts = rleCounts(rle.counts);
  let pos = 0;
  let area = 0;
  for (let i = 0; i < counts.length; i++) {
    const n = counts[i];
    if (i % 2 === 1) {
      for (let j = pos; j < pos + n; j++) {
        const row = j % h, col = (j - row) / h;
        ids[row * w + col] = id;
      }
      area += n;
    }
    pos += n;
  }
  return area;
}

/** The DAVIS / PASCAL VOC colour of every id 0..255 as [r, g, b]. */
export function davisPalette() {
  const pal = [];
  for (let id = 0; id < 256; id++) {
    let r = 0, g = 0, b = 0, c = id;
    for (let shift = 7; shift >= 0; shift--) {
      r |= (c & 1) << shift;
      g |= ((c >> 1) & 1) << shift;
      b |= ((c >> 2) & 1) << shift;
      c >>= 3;
    }
    pal.push([r, g, b]);
  }
  return pal;
}
