// Unit tests of js/lib/region_sender.js (node --test, mocked timers): throttled sends, one request in flight, the
// newest region always goes in the end.
import assert from "node:assert/strict";
import { mock, test } from "node:test";
import { RegionSender } from "../../simvis_widgets/widgets/js/lib/region_sender.js";

function setup() {
  mock.timers.enable({ apis: ["setTimeout", "Date"] });
  let now = 0;
  const clock = mock.method(performance, "now", () => now);
  const sent = [];
  const model = { set: (name, value) => sent.push({ name, value }), save_changes: () => {} };
  let weights = new Float32Array([0, 1]);
  const sender = new RegionSender(model, () => weights, { everyMs: 50, inFlightWaitMs: 1000 });
  const advance = (ms) => {
    now += ms;
    mock.timers.tick(ms);
  };
  const teardown = () => {
    clock.mock.restore();
    mock.timers.reset();
  };
  return { sender, sent, advance, setWeights: (w) => (weights = w), teardown };
}

test("sends at once, then waits for the answer; the newest region goes when it comes", () => {
  const { sender, sent, advance, setWeights, teardown } = setup();
  try {
    sender.send();
    assert.deepEqual(
      sent.map((s) => s.value),
      [{ kind: "cells", weights: [0, 1], id: 1 }],
    );
    assert.equal(sent[0].name, "query_region");
    advance(100);
    setWeights(new Float32Array([1, 1]));
    sender.send();
    setWeights(null);
    sender.send();
    assert.equal(sent.length, 1, "nothing more while request 1 is unanswered");
    sender.answered(1);
    assert.deepEqual(sent[1].value, { kind: "whole", id: 2 }, "the newest region, not the one in between");
  } finally {
    teardown();
  }
});

test("throttles to one send per everyMs, the last state going when the time is up", () => {
  const { sender, sent, advance, setWeights, teardown } = setup();
  try {
    sender.send();
    sender.answered(1);
    advance(10);
    setWeights(new Float32Array([0.5, 0]));
    sender.send();
    assert.equal(sent.length, 1);
    advance(40);
    assert.deepEqual(sent[1].value, { kind: "cells", weights: [0.5, 0], id: 2 });
    sender.answered(2);
    sender.send(true); // force: no wait
    assert.equal(sent.length, 3);
  } finally {
    teardown();
  }
});

test("an answer that never comes stops blocking after inFlightWaitMs", () => {
  const { sender, sent, advance, teardown } = setup();
  try {
    sender.send();
    advance(60);
    sender.send();
    assert.equal(sent.length, 1);
    advance(940);
    assert.equal(sent.length, 2);
    assert.equal(sent[1].value.id, 2);
  } finally {
    teardown();
  }
});
