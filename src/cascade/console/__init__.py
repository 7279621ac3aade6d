"""The local web console of ``cascade run``: topology, live deliveries, one chain, dead letters.

It adds views over what already exists (the broker's activity feed and metrics, the dead-letter
function's API, the run's span store); it keeps no state of its own. See docs/console.md.
"""
