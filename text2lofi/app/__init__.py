"""The shells' library: the studio service, the survey store and the Gradio page over them.

In: user actions (create, refine, rate, listen) from the page, the Gradio API or Python.
Out: tracks on disk with their generation ids, ratings in the survey database, the page.

Modules: `studio` (the typed service: policy for seeds, lengths, overrides, files, history; no Gradio),
`survey` (SQLAlchemy store), `web` (the Gradio Blocks, only wiring to `studio`), `serve` (the command line
of `python app.py` and `text2lofi serve`).
"""
