export { emuCase } from "./emulation.js";
export { roundTripCase, regValue } from "./roundtrip.js";
