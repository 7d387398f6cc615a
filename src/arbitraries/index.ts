export { emuCase } from "./emulation.js";
export { roundTripCase, regValue } from "./roundtrip.js";
export { badFrameCase, badFrame, badSelector, type BadFrame, type BadFrameCase } from "./bad-frame.js";
export { userSegmentsCase, userSegment, userFrameChange, BAD_SELECTORS, type UserSegment, type UserFrameChange, type UserSegmentsCase } from "./user-segments.js";
