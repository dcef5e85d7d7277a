"""What goes into the queue: sync messages published by their stable task names, and the
grouping of Salesforce rows into one snapshot per account that every publisher shares.

It sits below the jobs (tasks/) and the listener so that both publish the same way without
importing each other: a job that needs another one sends it by name, never by importing it.
"""
