import{a,b,c}from"./c-MNUSKMKV.js";import"./c-ISECSNX3.js";export{a as Forgot,c as Reset,b as useLinkToken};
