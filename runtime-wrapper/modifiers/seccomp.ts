// Containers annotated io.slimfast.seccomp=true: connect() goes to the broker's seccomp agent
// (native/addon/seccomp_agent.cc) through a linux.seccomp rule SCMP_ACT_NOTIFY, so that programs the
// preload does not reach (statically linked ones) get host connections to SlimFast destinations too;
// listen(), accept() and accept4() too, so that such servers get kernel-steered listeners.
// runc sends the filter's notify fd to listenerPath (STATE_DIR/seccomp.sock: slimfast-seccomp-keeper, which passes it to the broker) with
// listenerMetadata, the container's id (one that shares another's network namespace, such as a pod's
// app container, is not registered itself: the agent finds the registration by that namespace).
//
// The container's own profile is kept. Without one, the profile is {defaultAction: SCMP_ACT_ALLOW,
// syscalls: [the notify rule]}. With one, each of NOTIFIED_SYSCALLS is notified
// only where the profile allows it unconditionally: an SCMP_ACT_ALLOW rule naming it (it is moved out
// of that rule) or, when no rule names it, an SCMP_ACT_ALLOW default. A call the profile denies,
// traps, logs, traces or filters by its arguments is left as it is (and when that is connect, the
// profile stays unchanged altogether), and so is one whose listenerPath is somebody else's
// (one filter has one listener). Unknown fields stay. The annotation takes true/1/yes/on and
// false/0/no/off (case-insensitive); anything else is an error, so a typo does not silently leave a
// static program off SlimFast.
import { ANNOTATION_SECCOMP, isFalseAnnotation, isTrueAnnotation } from '../constants.js';
import { stateLayout } from '../../common/state-dir.js';
import { type Ctx, type Spec, SpecError, type SpecModifier } from '../spec.js';

/**
 * The system calls the agent answers: connect; getsockname/getpeername (virtual addresses of the
 * sockets it put in place); listen, accept and accept4 (steered listeners of static servers).
 */
export const NOTIFIED_SYSCALLS = ['connect', 'getsockname', 'getpeername', 'listen', 'accept', 'accept4'];

export interface SeccompRule {
  names?: string[];
  action?: string;
  args?: unknown[];
  [key: string]: unknown;
}

export interface SeccompProfile {
  defaultAction?: string;
  listenerPath?: string;
  listenerMetadata?: string;
  syscalls?: SeccompRule[];
  [key: string]: unknown;
}

/** The broker's seccomp socket for this install's state dir. */
export function seccompListenerPath(ctx: Pick<Ctx, 'stateDir'>): string {
  return stateLayout(ctx.stateDir).seccompSocket;
}

/** Whether the container asks for the agent: true, false, or a SpecError for another value.
 *  Without the annotation: dflt ("seccomp" in the config file). */
export function wantsSeccomp(spec: Spec, dflt = false): boolean {
  const v = spec.annotations?.[ANNOTATION_SECCOMP];
  if (v === undefined) return dflt;
  if (isFalseAnnotation(v)) return false;
  if (isTrueAnnotation(v)) return true;
  throw new SpecError(`annotation ${ANNOTATION_SECCOMP}="${v}" is neither true nor false (true/1/yes/on, false/0/no/off)`);
}

const hasArgs = (r: SeccompRule) => Array.isArray(r.args) && r.args.length > 0;
const isOurs = (r: SeccompRule, listener: boolean) =>
  listener &&
  r.action === 'SCMP_ACT_NOTIFY' &&
  !hasArgs(r) &&
  Array.isArray(r.names) &&
  r.names.length > 0 &&
  r.names.every((n) => NOTIFIED_SYSCALLS.includes(n));

/**
 * Adds the notify rule for every syscall of NOTIFIED_SYSCALLS the profile allows unconditionally.
 * Returns the syscalls notified (already or now); empty: the profile is unchanged.
 */
export function addNotifyRule(profile: SeccompProfile, listenerPath: string, metadata: string): string[] {
  if (profile.listenerPath !== undefined && profile.listenerPath !== listenerPath) return [];
  const mine = profile.listenerPath === listenerPath;
  const rules = (profile.syscalls ?? []).filter((r) => r && typeof r === 'object');
  const ours = rules.find((r) => isOurs(r, mine));
  const already = new Set(ours?.names ?? []);
  // What the profile does with each syscall, ignoring our own rule.
  const movable: { name: string; from?: SeccompRule }[] = [];
  for (const name of NOTIFIED_SYSCALLS) {
    if (already.has(name)) continue;
    const naming = rules.filter((r) => r !== ours && Array.isArray(r.names) && r.names.includes(name));
    if (naming.length === 0) {
      if (profile.defaultAction === 'SCMP_ACT_ALLOW') movable.push({ name });
      continue;
    }
    if (naming.length === 1 && naming[0].action === 'SCMP_ACT_ALLOW' && !hasArgs(naming[0])) movable.push({ name, from: naming[0] });
  }
  // Without connect, nothing (the profile's connect is somebody else's business, and so is the rest).
  if (movable.length === 0 || !(already.has('connect') || movable.some((m) => m.name === 'connect'))) return [...already];
  profile.syscalls ??= [];
  for (const m of movable) {
    if (!m.from) continue;
    m.from.names = m.from.names!.filter((n) => n !== m.name);
    if (m.from.names.length === 0) profile.syscalls.splice(profile.syscalls.indexOf(m.from), 1);
  }
  const names = [...already, ...movable.map((m) => m.name)];
  if (ours) ours.names = NOTIFIED_SYSCALLS.filter((n) => names.includes(n));
  else profile.syscalls.push({ names: NOTIFIED_SYSCALLS.filter((n) => names.includes(n)), action: 'SCMP_ACT_NOTIFY' });
  profile.listenerPath = listenerPath;
  profile.listenerMetadata = metadata;
  return names;
}

export const seccomp: SpecModifier = {
  name: 'seccomp',
  modify(spec: Spec, ctx: Ctx): void {
    if (!wantsSeccomp(spec, ctx.seccompDefault ?? false)) return;
    spec.linux ??= {};
    const linux = spec.linux;
    const listenerPath = seccompListenerPath(ctx);
    if (linux.seccomp === undefined || linux.seccomp === null) {
      linux.seccomp = {
        defaultAction: 'SCMP_ACT_ALLOW',
        listenerPath,
        listenerMetadata: ctx.id,
        syscalls: [{ names: [...NOTIFIED_SYSCALLS], action: 'SCMP_ACT_NOTIFY' }],
      };
      return;
    }
    if (typeof linux.seccomp !== 'object' || Array.isArray(linux.seccomp)) throw new SpecError('linux.seccomp is not an object');
    const profile = linux.seccomp as SeccompProfile;
    addNotifyRule(profile, listenerPath, ctx.id);
    // Ours: keep the metadata in step with the id (the precreate hook may choose it).
    if (profile.listenerPath === listenerPath) profile.listenerMetadata = ctx.id;
  },
};
