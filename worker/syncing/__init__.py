"""One account's sync, as named steps: validate -> count the delivery -> map -> plan the
contracts -> dedupe -> converge the customer under the account lock -> record -> make the
contracts. tasks/sync.py runs them in that order; each step answers with a value (Done, Retry)
or lets the next one run.

The package sits below the jobs (it needs the worker's objects, never a Celery task) and
above the queue it publishes drains through.
"""
