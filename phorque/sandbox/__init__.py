"""phorque-sandbox: a small stand-in for a Torque ``pbs_server``, for demos and integration tests.

A sandbox cluster lives in one folder. It has Torque's layout (``server_priv/accounting``,
``server_priv/jobs``, ``server_name``) and executables ``bin/qsub``, ``qstat``, ``qdel``,
``pbsnodes`` and ``qmgr`` that take the real commands' arguments and print what Torque 6 prints.
Its own state (an sqlite database, a lock, the server's pid lock) lives in ``sandbox/``.

How time advances: a small background server (``phorque-sandbox start DIR``) ticks every
~0.1 s and starts and ends jobs, boots cloud nodes and purges completed jobs, so the accounting
records and job files appear when their moment comes, as pbs_server writes them. Every command
also catches up the elapsed time under the lock before it answers, so what it prints is always
current. Events are processed at their own due times, in order, so the result does not depend on
who (tick or command) happened to process them.

Modules, from the bottom up:

- :mod:`.layout`: where each file of a sandbox cluster lives.
- :mod:`.store`: the sqlite state and the lock every change is made under.
- :mod:`.request`: qsub's resource requests, array ranges and the sandbox's run-time directive.
- :mod:`.placement`: which slots of which nodes a job gets (pure).
- :mod:`.acct` and :mod:`.jobfiles`: the accounting log and ``server_priv/jobs`` files.
- :mod:`.engine`: the server itself: time, the FIFO scheduler, job and node life cycles.
- :mod:`.jobattrs`, :mod:`.nodeattrs`, :mod:`.render`: what qstat and pbsnodes print.
- :mod:`.client` and :mod:`.commands`: the Torque commands.
- :mod:`.server`, :mod:`.cloud`, :mod:`.cluster`, :mod:`.cli`: the ``phorque-sandbox`` tool.

The command path (``bin/*``) is kept cheap to start: it imports neither boto3 nor
:mod:`phorque.model` unless a request needs Torque's resource arithmetic.
"""
