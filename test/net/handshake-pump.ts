/**
 * Runs two in-process handshakes against each other: frames are pumped both ways until
 * neither side has anything to say; returns every frame sent, in order.
 */
import type { Frame } from '../../src/net/frame.js';
import type { Handshake } from '../../src/net/handshake.js';

export function run(i: Handshake, r: Handshake): Frame[] {
  const wire: Frame[] = [];
  let toResponder: Frame[] = i.start();
  let toInitiator: Frame[] = [];
  while (toResponder.length > 0 || toInitiator.length > 0) {
    wire.push(...toResponder, ...toInitiator);
    const nextToInitiator = toResponder.flatMap((f) => [...r.receive(f).send]);
    const nextToResponder = toInitiator.flatMap((f) => [...i.receive(f).send]);
    toResponder = nextToResponder;
    toInitiator = nextToInitiator;
  }
  return wire;
}
