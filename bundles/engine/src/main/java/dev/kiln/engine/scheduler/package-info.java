/** Sequences and the continuous-batching scheduler: chunked prefill, FCFS admission, preemption by recomputation. */
package dev.kiln.engine.scheduler;
