"""vidfarm as Esup-Pod's own remote workers: Pod's Celery tasks, Pod's files, Pod's callbacks.

Pod publishes `start_encoding_task`, `start_transcripting_task`, `send_xapi_statement_task`
to its Redis queues and expects workers that share its media tree and call its REST API back.
This package registers those exact task names on Pod's brokers and does the work with
vidfarm's engines; Pod stays the source of truth (no vidfarm database). docs/pod.md.
"""
