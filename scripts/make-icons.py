"""Draws the app's home-screen icons (icons/*.png) from icon.svg's shapes, with Pillow.

Run once after changing icon.svg: python3 scripts/make-icons.py
"""

import pathlib

from PIL import Image, ImageDraw

ICONS = pathlib.Path(__file__).resolve().parent.parent / "icons"


def icon(size, maskable):
    s = size * 4
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    purple = (0x5B, 0x5B, 0xD6, 255)
    if maskable:
        # Full bleed, the drawing within the 80% safe zone.
        d.rectangle([0, 0, s, s], fill=purple)
        k, off = s / 64 * 0.8, s * 0.1
    else:
        d.rounded_rectangle([0, 0, s - 1, s - 1], radius=s * 14 / 64, fill=purple)
        k, off = s / 64, 0

    def p(x, y):
        return (off + x * k, off + y * k)

    # icon.svg's arch: M18 40 c6-14 22-14 28 0, stroke 6 with round caps; its head: r 6 at (32, 24).
    b = [(18, 40), (24, 26), (40, 26), (46, 40)]
    points = []
    for i in range(41):
        t = i / 40
        weights = [(1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t * t, t**3]
        points.append(p(sum(w * q[0] for w, q in zip(weights, b)), sum(w * q[1] for w, q in zip(weights, b))))
    w = 6 * k
    d.line(points, fill="white", width=int(w), joint="curve")
    for x, y in (points[0], points[-1]):
        d.ellipse([x - w / 2, y - w / 2, x + w / 2, y + w / 2], fill="white")
    cx, cy = p(32, 24)
    r = 6 * k
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill="white")
    return img.resize((size, size), Image.LANCZOS)


ICONS.mkdir(exist_ok=True)
icon(192, False).save(ICONS / "icon-192.png", optimize=True)
icon(512, False).save(ICONS / "icon-512.png", optimize=True)
icon(512, True).save(ICONS / "maskable-512.png", optimize=True)
