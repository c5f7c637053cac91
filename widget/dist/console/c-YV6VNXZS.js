import{a,b,c}from"./c-O73SP46H.js";import"./c-ROJU5R5C.js";export{a as Forgot,c as Reset,b as useLinkToken};
