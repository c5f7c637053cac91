import{a,b,c}from"./c-IIWSRIH2.js";import"./c-CJN673CP.js";export{a as Forgot,c as Reset,b as useLinkToken};
