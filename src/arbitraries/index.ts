export { emuCase } from "./emulation.js";
export { roundTripCase, regValue } from "./roundtrip.js";
export { badFrameCase, badFrame, badSelector, type BadFrame, type BadFrameCase } from "./bad-frame.js";
