/**
 * Fault injection for the fault suite (test/faults/). `WARMSYNC_FAULT_STOP=NAME:N` makes this
 * process stop itself (SIGSTOP) when it reaches step N of the operation NAME, so that a test can
 * SIGKILL it at exactly that point, however fast or slow the machine. Unset, a step costs one
 * comparison. Named steps: `promote` and `restore` (0: journal durable, k: k files moved, n + 1:
 * manifest committed); `commit` (the receiver, k: its kth file renamed into place, not yet recorded).
 */
const spec = process.env['WARMSYNC_FAULT_STOP'];

export function faultPoint(name: string): (step: number) => void {
  const m = spec === undefined ? null : /^([a-z-]+):(\d+)$/.exec(spec);
  if (m === null || m[1] !== name) return () => undefined;
  const at = Number(m[2]);
  return (step) => {
    if (step === at) process.kill(process.pid, 'SIGSTOP');
  };
}
