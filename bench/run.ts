import { benchInterp } from "./interp.js";
import { benchRoundtrip } from "./roundtrip.js";
import { benchCheck } from "./check.js";
import { benchSmp } from "./smp.js";
import { benchCampaign } from "./campaign.js";
import { benchPatch } from "./patch.js";

/** `npm run bench`: prints one JSON line per figure (benchCheck prints the native anchor's beside its own). */
benchInterp();
benchRoundtrip();
benchCheck();
benchSmp();
benchCampaign();
benchPatch();
