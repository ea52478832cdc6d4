"""Command line inference with a trained sser model.

    sser-predict --model DIR_OR_REPO FILES_OR_FOLDERS... [--output out.jsonl|out.csv]
                 [--batch-size N] [--device cpu|cuda] [--quantize int8]
                 [--trust-hparams]

Folders are searched recursively for audio files. One result per file
(label, score, all probabilities; or the attributes of an attribute model);
a file that cannot be read gets an error naming it and the others go on. The
exit status is 1 if any file failed, 2 if nothing could be run at all
(e.g. a model whose ``hyperparams.yaml`` names code an exported sser model
never uses: it is refused, see :mod:`sser_lobes.safe_hparams`).
``--quantize int8`` runs the SSL encoder in dynamic int8 on the CPU
(:mod:`sser_lobes.quantize`); with ``--device cuda`` it is refused.
"""

import argparse
import csv
import json
import sys
from pathlib import Path

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au"}


def find_audio(inputs):
    """Files given directly, plus audio files found (recursively) in folders.

    Example
    -------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "a.wav").touch(); (root / "notes.txt").touch()
    >>> [p.name for p in find_audio([root])]
    ['a.wav']
    """
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in AUDIO_EXTENSIONS
                and not p.name.startswith("._")
            )
        else:
            files.append(path)  # missing files are reported per file
    return files


def write_results(results, output, labels):
    """Write results as JSON lines (``.jsonl``/``.json``) or CSV (``.csv``)."""
    output = Path(output)
    if output.suffix.lower() == ".csv":
        with open(output, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            values = [f"prob_{label}" for label in labels]
            attribute_model = any("attributes" in r for r in results)
            if attribute_model:
                values = list(labels)
            writer.writerow(["file", "label", "score", "gender", *values, "error"])
            for r in results:
                scores = r.get("attributes") or r.get("probabilities") or {}
                writer.writerow(
                    [
                        r["file"],
                        r.get("label", ""),
                        "" if "score" not in r else f"{r['score']:.6f}",
                        r.get("gender", ""),
                        *(
                            "" if label not in scores else f"{scores[label]:.6f}"
                            for label in labels
                        ),
                        r.get("error", ""),
                    ]
                )
    else:
        with open(output, "w", encoding="utf-8") as handle:
            for r in results:
                handle.write(json.dumps(r) + "\n")


def main(argv=None):
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", required=True, help="exported model folder or Hub id"
    )
    parser.add_argument("inputs", nargs="+", help="audio files or folders")
    parser.add_argument("--output", help="out.jsonl or out.csv (default: stdout)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--quantize",
        choices=["int8"],
        help="int8: dynamic int8 SSL encoder, faster on CPU (CPU only)",
    )
    parser.add_argument("--savedir", help="where to keep a downloaded model")
    parser.add_argument(
        "--trust-hparams",
        action="store_true",
        help="skip the check of the model's hyperparams.yaml: this runs code "
        "named in the YAML, only for your own hand-written files",
    )
    args = parser.parse_args(argv)

    files = find_audio(args.inputs)
    if not files:
        print("error: no audio files found in the inputs.", file=sys.stderr)
        return 2
    from sser_lobes.inference import EmotionRecognizer

    try:
        recognizer = EmotionRecognizer.from_hparams(
            args.model,
            savedir=args.savedir,
            run_opts={"device": args.device},
            trust_hparams=args.trust_hparams,
            quantize=args.quantize,
        )
    except (OSError, ValueError) as error:
        message = " ".join(str(error).split())
        print(f"error: cannot load the model {args.model}: {message}", file=sys.stderr)
        return 2
    results = recognizer.predict_files(files, batch_size=args.batch_size, progress=True)
    if args.output:
        write_results(results, args.output, recognizer.labels)
    else:
        for r in results:
            print(json.dumps(r))
    failed = [r for r in results if "error" in r]
    for r in failed:
        print(f"error: {r['error']}", file=sys.stderr)
    print(
        f"{len(results) - len(failed)} of {len(results)} files processed"
        + (f", {len(failed)} failed" if failed else ""),
        file=sys.stderr,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
