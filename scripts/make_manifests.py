"""Write the image manifests (srlib/manifests/quick-*.tsv, datasets/T91.tsv, datasets/BSD200.tsv) from a data root.

    python scripts/make_manifests.py --data-root /path/to/datasets

quick-holdout: 10 BSD200 images (every 20th id in sorted order), fixed before any tuning; they choose
the recipe (learning rate, schedule, warm-up length) and are never trained on.
quick-train: T91 and the other 190 BSD200 images (281 images; DIV2K is left out: a user would have to
fetch its 3.5 GB archive for the two DIV2K images our machines hold).
datasets/T91.tsv, datasets/BSD200.tsv: every image of the two training sets that `srlib download`
checks by its pixels (no archive checksum is published for them).
Rows are dataset, image name without extension, sha256 of the decoded pixels (srlib.data.pixel_hash).
"""
import argparse

from srlib.data import MANIFEST_DIR, hr_files, pixel_hash
from srlib.io import atomic_write, read_image

HOLDOUT_EVERY = 20


def rows(dataset, files):
    return [(dataset, f.stem, pixel_hash(read_image(f))) for f in files]


def write(name, table, comment):
    (MANIFEST_DIR / name).parent.mkdir(parents=True, exist_ok=True)
    text = f"# {comment}\ndataset\timage\tpixel_sha256\n" + "".join("\t".join(r) + "\n" for r in table)
    atomic_write(MANIFEST_DIR / f"{name}.tsv", lambda f: f.write(text.encode()))
    print(f"{name}: {len(table)} images")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", required=True)
    a = p.parse_args()
    bsd = hr_files("BSD200", a.data_root)
    holdout = bsd[::HOLDOUT_EVERY]
    write("quick-holdout", rows("BSD200", holdout), f"every {HOLDOUT_EVERY}th BSD200 image: the tuning split")
    train = rows("T91", hr_files("T91", a.data_root)) + rows("BSD200", [f for f in bsd if f not in holdout])
    write("quick-train", train, "T91 + BSD200 without quick-holdout")
    for ds, origin in (("T91", "jiny2001/dcscn-super-resolution @ d382bc30 data/yang91/*.bmp"),
                       ("BSD200", "Zheng222/IDN-Caffe @ 482c6013 train/291/<id>.jpg (the BSDS300 train JPEGs)")):
        write(f"datasets/{ds}", rows(ds, hr_files(ds, a.data_root)), f"{ds}: pixel hashes of the images of {origin}")


if __name__ == "__main__":
    main()
