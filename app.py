"""text2lofi web app and API: `python app.py` serves http://127.0.0.1:7860 (options: `python app.py --help`).

The same command as `text2lofi serve`; everything it runs is in text2lofi.app.
"""
from text2lofi.app.serve import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python app.py"))
