"""phorque-sandbox: a small stand-in for a Torque ``pbs_server``, for demos and integration tests.

A sandbox cluster lives in one folder. It has Torque's layout (``server_priv/accounting``,
``server_priv/jobs``, ``server_name``) and executables ``bin/qsub``, ``qstat``, ``qdel``, ``qrerun``,
``pbsnodes`` and ``qmgr`` that take the real commands' arguments and print what Torque 6 prints.
Its own state (an sqlite database, locks, the server's socket) lives in ``sandbox/``.

How time advances: a small server process per cluster (``phorque-sandbox start DIR``) plays
pbs_server. The commands are thin clients, as Torque's are: they send their request over a Unix
socket and print the answer, so they start fast and fail like Torque clients when the server is
down. The server answers each request after catching the cluster up to that moment, and between
requests it ticks every ~0.1 s, so that jobs start and end, nodes boot and completed jobs are
purged on time, and accounting records and job files appear when their moment comes even when
nobody asks. Events are processed at their own due times, in order, so the outcome does not
depend on when they happen to be processed.

Modules, from the bottom up:

- :mod:`.layout`: where each file of a sandbox cluster lives.
- :mod:`.store`: the sqlite state and the lock every change is made under.
- :mod:`.request`: qsub's resource requests, array ranges and the sandbox's run-time directive.
- :mod:`.placement`: which slots of which nodes a job gets (pure).
- :mod:`.acct` and :mod:`.jobfiles`: the accounting log and ``server_priv/jobs`` files.
- :mod:`.engine`, :mod:`.scheduler`, :mod:`.nodeadmin`, :mod:`.queues` and :mod:`.hosts`:
  pbs_server itself: time, pbs_sched's FIFO, the life of jobs, nodes and queues, which node
  names resolve.
- :mod:`.jobattrs`, :mod:`.nodeattrs`, :mod:`.render`: what qstat and pbsnodes print.
- :mod:`.wire` (the commands' client side), :mod:`.invocation`, :mod:`.dispatch` and
  :mod:`.commands` (their server side), :mod:`.qmgrparse`, :mod:`.faults`.
- :mod:`.server`, :mod:`.cloud`, :mod:`.cluster`, :mod:`.cli`: the ``phorque-sandbox`` tool.
"""
