"""What ranks agree on each step: every Horovod call (collectives), the two synchronisers
(lockstep step, local SGD), the summed stats vector and the control flags it carries."""
